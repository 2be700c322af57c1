"""Snakemake script: generate galaxies for held-out parameters, measure them again; the gallery."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import flow_closure_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    flow_closure_file(
        snakemake.params.config,
        flow_path=snakemake.input.flow,
        vae_path=snakemake.input.vae,
        data_path=snakemake.input.data,
        template_path=snakemake.input.template,
        closure_path=snakemake.output.closure,
        summary_path=snakemake.output.summary,
        gallery_path=snakemake.output.gallery,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
