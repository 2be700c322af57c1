"""Snakemake script: the structure the super-resolved images recover, and the calibration of the draws."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import superres_structure_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    superres_structure_file(
        snakemake.params.superres,
        snakemake.params.seed,
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        diffusion_path=snakemake.input.diffusion,
        regression_path=snakemake.input.regression,
        structure_path=snakemake.output.structure,
        galaxies_path=snakemake.output.galaxies,
        calibration_path=snakemake.output.calibration,
        sersic_path=next(iter(snakemake.input.sersic), None),
        truth_path=next(iter(snakemake.input.truth), None),
        mock_config=snakemake.params.mock,
        threads=snakemake.threads,
    )
