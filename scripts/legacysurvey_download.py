"""Snakemake script: fetch one shard's cutouts of one survey from the Legacy Survey cutout service."""

from galmap.core.joblog import job_log
from galmap.data.jobs import legacysurvey_download_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    legacysurvey_download_file(
        dict(snakemake.params.items()),
        survey=snakemake.wildcards.survey,
        catalog_path=snakemake.input.catalog,
        shard=int(snakemake.wildcards.shard),
        folder=snakemake.params.folder,
        manifest_path=snakemake.output.manifest,
    )
