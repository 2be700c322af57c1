"""Snakemake script: train the super-resolution diffusion model or its regression baseline (wildcard model)."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import superres_train_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    superres_train_file(
        snakemake.wildcards.model,
        snakemake.params.superres,
        snakemake.params.seed,
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        sersic_path=next(iter(snakemake.input.sersic), None),
        threads=snakemake.threads,
    )
