"""Snakemake script: train the VAE for one latent size on the preprocessed shards."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import train_vae_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    train_vae_file(
        snakemake.params.vae,
        snakemake.params.seed,
        int(snakemake.wildcards.k),
        list(snakemake.input.images),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        threads=snakemake.threads,
    )
