"""Snakemake script: fit the conditional normalizing flow p(latents | parameters)."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import flow_train_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    flow_train_file(
        snakemake.params.flow,
        snakemake.params.seed,
        latents_path=snakemake.input.latents,
        sersic_path=snakemake.input.sersic,
        morphometry_path=snakemake.input.morphometry,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        data_path=snakemake.output.data,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
