"""Snakemake script: domain/metrics.csv from the predictions of every method."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_metrics_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_metrics_file(
        snakemake.input.targets, snakemake.input.classes, snakemake.input.predictions, snakemake.output.metrics
    )
