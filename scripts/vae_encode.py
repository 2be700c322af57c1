"""Snakemake script: latents and reconstruction metrics of one preprocessed shard."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import encode_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    encode_file(
        snakemake.params.vae,
        snakemake.params.seed,
        model_path=snakemake.input.model,
        images_path=snakemake.input.images,
        out_path=snakemake.output.latents,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
