"""Snakemake script: latent-space and reconstruction outliers, validated against injected anomalies."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import outliers_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    outliers_file(
        snakemake.params.outliers,
        snakemake.params.seed,
        latents_path=snakemake.input.latents,
        truth_path=next(iter(snakemake.input.truth), None),
        out_path=snakemake.output.table,
        metrics_path=snakemake.output.metrics,
        roc_path=snakemake.output.roc,
    )
