"""Snakemake script: one raw shard of one survey from FITS cutouts (a local folder or the downloads)."""

from galmap.core.joblog import job_log
from galmap.data.jobs import ingest_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    ingest_file(
        dict(snakemake.params.items()),
        survey=snakemake.wildcards.survey,
        table_path=snakemake.input.table,
        shard=int(snakemake.wildcards.shard),
        out_path=snakemake.output.shard,
        failures_path=snakemake.output.failures,
    )
