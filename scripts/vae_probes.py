"""Snakemake script: probes.csv, forests on the latents of every scanned size beside the image ceiling."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import probes_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    probes_file(
        snakemake.params.vae,
        snakemake.params.seed,
        latent_paths=list(snakemake.input.latents),
        truth_path=snakemake.input.truth,
        ceiling_path=snakemake.input.ceiling,
        out_path=snakemake.output[0],
        threads=snakemake.threads,
    )
