"""Snakemake script: preprocess one image shard (background, masks, PSF, normalisation)."""

from galmap.core.joblog import job_log
from galmap.preprocess.jobs import preprocess_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    preprocess_file(
        snakemake.params.preprocess,
        raw_path=snakemake.input.raw,
        out_path=snakemake.output.images,
        failures_path=snakemake.output.failures,
        catalog_path=snakemake.input.catalog,
    )
