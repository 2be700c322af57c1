"""Snakemake script: evaluate the super-resolution models on the held-out galaxies."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import superres_evaluate_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    superres_evaluate_file(
        snakemake.params.superres,
        snakemake.params.seed,
        source_paths=list(snakemake.input.source),
        target_paths=list(snakemake.input.target),
        diffusion_path=snakemake.input.diffusion,
        regression_path=snakemake.input.regression,
        metrics_path=snakemake.output.metrics,
        re_path=snakemake.output.re_compare,
        examples_path=snakemake.output.examples,
        failures_path=snakemake.output.failures,
        sersic_path=next(iter(snakemake.input.sersic), None),
        threads=snakemake.threads,
    )
