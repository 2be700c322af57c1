"""Snakemake script: predictions of every domain-adaptation method on the source and target images."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_predict_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_predict_file(
        snakemake.params.batch_size,
        targets_path=snakemake.input.targets,
        classes_path=snakemake.input.classes,
        classifier_path=snakemake.input.classifier,
        dann_path=snakemake.input.dann,
        distill_path=snakemake.input.distill,
        reference_path=snakemake.input.get("reference"),
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        out_path=snakemake.output.predictions,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
