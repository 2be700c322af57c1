"""Snakemake script: draw the mock population (truth table and catalog)."""

from galmap.core.joblog import job_log
from galmap.mock.jobs import make_mock_catalog

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    make_mock_catalog(
        dict(snakemake.params.items()),
        truth_path=snakemake.output.truth,
        catalog_path=snakemake.output.catalog,
        processes=snakemake.threads,
    )
