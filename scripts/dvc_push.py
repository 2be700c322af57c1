"""Snakemake script: track data, results and Snakemake's metadata with DVC and push them to the remote."""

from galmap.dvc import push
from galmap.io import atomic_path
from galmap.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    pushed = push()
    with atomic_path(snakemake.output[0]) as tmp:
        tmp.write_text("\n".join(pushed) + "\n")
