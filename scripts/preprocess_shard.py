"""Snakemake script: preprocess one shard of every survey it lists (background, masks, PSF, normalisation)."""

from galmap.core.joblog import job_log
from galmap.preprocess.jobs import preprocess_files

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    preprocess_files(
        snakemake.params.preprocess,
        raw_paths=list(snakemake.input.raw),
        out_paths=list(snakemake.output.images),
        failures_paths=list(snakemake.output.failures),
        catalog_path=snakemake.input.catalog,
    )
