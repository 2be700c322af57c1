"""Snakemake script: SSIM, MSE and MAE against the number of latents, with the morphology-aware metrics."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import latent_scan_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

truth = snakemake.input.get("truth")  # the mock's truth table, or nothing on real data
with job_log(snakemake.log[0]):
    latent_scan_file(
        list(snakemake.input.latents),
        list(snakemake.input.histories),
        snakemake.output[0],
        morph_paths=list(snakemake.input.morphology),
        truth_path=truth if isinstance(truth, str) else next(iter(truth or []), None),
    )
