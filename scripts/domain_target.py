"""Snakemake script: one shard of the target survey on the source grid (survey A -> survey B)."""

from galmap.core.joblog import job_log
from galmap.domain.jobs import domain_target_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    domain_target_file(
        snakemake.params.target_bands,
        source_path=snakemake.input.source,
        component_paths=dict(zip(snakemake.params.target_surveys, snakemake.input.target, strict=True)),
        out_path=snakemake.output.images,
        failures_path=snakemake.output.failures,
    )
