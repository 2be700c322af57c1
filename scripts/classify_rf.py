"""Snakemake script: one random forest per question on the VAE latents."""

from galmap.classify.jobs import classify_rf_file
from galmap.core.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    classify_rf_file(
        snakemake.params.classify,
        snakemake.params.seed,
        targets_path=snakemake.input.targets,
        latents_path=snakemake.input.latents,
        out_path=snakemake.output.predictions,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
