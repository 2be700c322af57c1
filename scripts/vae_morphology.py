"""Snakemake script: morphology-aware reconstruction metrics of one VAE's test galaxies."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import morph_metrics_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    morph_metrics_file(
        snakemake.params.vae,
        snakemake.params.seed,
        model_path=snakemake.input.model,
        image_paths=list(snakemake.input.images),
        noiseless_path=snakemake.input.get("noiseless"),
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
