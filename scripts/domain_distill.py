"""Snakemake script: cross-survey distillation of the source CNN on the overlap (no label of either survey)."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_distill_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_distill_file(
        snakemake.params.distill,
        snakemake.params.seed,
        targets_path=snakemake.input.targets,
        classifier_path=snakemake.input.classifier,
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        threads=snakemake.threads,
    )
