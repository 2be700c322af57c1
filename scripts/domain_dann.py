"""Snakemake script: domain-adversarial fine-tuning of the source CNN (no target label)."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_dann_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_dann_file(
        snakemake.params.dann,
        snakemake.params.seed,
        targets_path=snakemake.input.targets,
        classes_path=snakemake.input.classes,
        classifier_path=snakemake.input.classifier,
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        threads=snakemake.threads,
    )
