"""Snakemake script: gather per-shard failure tables into the stage's failures.csv."""

from galmap.core.joblog import job_log
from galmap.core.jobs import gather_failure_tables

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    gather_failure_tables(list(snakemake.input), snakemake.output[0])
