"""Snakemake script: evaluate the Hα U-Net or the Hα diffusion model on the held-out galaxies."""

from galmap.core.joblog import job_log
from galmap.images2images.jobs import halpha_evaluate_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    halpha_evaluate_file(
        snakemake.params.halpha,
        snakemake.params.seed,
        input_paths=list(snakemake.input.inputs),
        target_paths=list(snakemake.input.target),
        model_path=snakemake.input.model,
        truth_path=next(iter(snakemake.input.truth), None),
        metrics_path=snakemake.output.metrics,
        predictions_path=snakemake.output.predictions,
        examples_path=snakemake.output.get("examples"),
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
