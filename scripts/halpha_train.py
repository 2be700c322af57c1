"""Snakemake script: train the u,g,r,i,z -> Hα U-Net or the Hα diffusion model (wildcard model)."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import halpha_train_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    halpha_train_file(
        snakemake.params.halpha,
        snakemake.params.seed,
        input_paths=list(snakemake.input.inputs),
        target_paths=list(snakemake.input.target),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        threads=snakemake.threads,
        kind=snakemake.wildcards.model,
    )
