"""Snakemake script: Sérsic fits or morphometry of one preprocessed shard (params.kind says which)."""

from galmap.core.joblog import job_log
from galmap.structure.jobs import structure_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    structure_file(
        snakemake.params.kind,
        snakemake.params.structure,
        images_path=snakemake.input.images,
        out_path=snakemake.output.table,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
