"""Snakemake script: track data, results and Snakemake's metadata with DVC and push them to the remote."""

from pathlib import Path

from galmap.core.joblog import job_log
from galmap.data.dvc import push

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    pushed = push()
    Path(snakemake.output[0]).write_text("\n".join(pushed) + "\n")
