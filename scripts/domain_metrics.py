"""Snakemake script: domain/metrics.csv and domain/summary.csv from every pair's predictions."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_metrics_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_metrics_file(
        snakemake.input.targets,
        snakemake.input.classes,
        list(snakemake.input.predictions),
        list(snakemake.params.pairs),
        snakemake.output.metrics,
        snakemake.output.summary,
        resamples=snakemake.params.resamples,
        seed=snakemake.params.seed,
    )
