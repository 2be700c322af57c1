"""Snakemake script: the multi-head CNN on the images, trained and applied on the same splits."""

from galmap.classify.jobs import classify_cnn_file
from galmap.core.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    classify_cnn_file(
        snakemake.params.classify,
        snakemake.params.seed,
        targets_path=snakemake.input.targets,
        classes_path=snakemake.input.classes,
        image_paths=list(snakemake.input.images),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        out_path=snakemake.output.predictions,
        failures_path=snakemake.output.failures,
        threads=snakemake.threads,
    )
