"""Snakemake script: noiseless stamps of the VAE's test galaxies (mock only), the morphology metrics' reference."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import noiseless_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    noiseless_file(
        snakemake.params.config,
        truth_path=snakemake.input.truth,
        image_paths=list(snakemake.input.images),
        out_path=snakemake.output.shard,
        failures_path=snakemake.output.failures,
    )
