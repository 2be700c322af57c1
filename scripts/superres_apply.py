"""Snakemake script: run the trained super-resolution models on a user's FITS cutout (superres.apply)."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import superres_apply_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    superres_apply_file(
        snakemake.input.cutout,
        snakemake.params.superres,
        snakemake.params.structure,
        snakemake.params.preprocess,
        snakemake.params.seed,
        diffusion_path=snakemake.input.diffusion,
        regression_path=snakemake.input.regression,
        source_ref_path=snakemake.input.source_ref,
        target_ref_path=snakemake.input.target_ref,
        table_path=snakemake.output.table,
        figure_path=snakemake.output.figure,
        calibration_path=snakemake.input.calibration,
        threads=snakemake.threads,
    )
