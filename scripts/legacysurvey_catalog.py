"""Snakemake script: fetch the Galaxy Zoo DECaLS catalog from Zenodo; write the selection's catalog and labels."""

from galmap.core.joblog import job_log
from galmap.data.jobs import legacysurvey_catalog_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    legacysurvey_catalog_file(
        dict(snakemake.params.items()),
        folder=snakemake.params.folder,
        catalog_path=snakemake.output.catalog,
        labels_path=snakemake.output.labels,
        counts_path=snakemake.output.counts,
        failures_path=snakemake.output.failures,
    )
