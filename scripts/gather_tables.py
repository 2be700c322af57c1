"""Snakemake script: concatenate per-shard Parquet tables into the stage's table."""

from galmap.core.joblog import job_log
from galmap.core.jobs import gather_tables

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    gather_tables(list(snakemake.input), snakemake.output[0])
