"""Snakemake script: SSIM, MSE and MAE against the number of latents."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import latent_scan_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    latent_scan_file(list(snakemake.input.latents), list(snakemake.input.histories), snakemake.output[0])
