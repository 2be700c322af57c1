"""Snakemake script: the catalog and labels of a local folder of FITS cutouts."""

from galmap.core.joblog import job_log
from galmap.data.jobs import local_catalog_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    local_catalog_file(
        dict(snakemake.params.items()),
        catalog_path=snakemake.output.catalog,
        labels_path=snakemake.output.labels,
        failures_path=snakemake.output.failures,
    )
