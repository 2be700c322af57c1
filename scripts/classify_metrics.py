"""Snakemake script: the classification metrics, confusion matrices and CNN - forest comparison (test split)."""

from galmap.classify.jobs import classify_metrics_file
from galmap.core.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    classify_metrics_file(
        snakemake.input.targets,
        snakemake.input.classes,
        {"rf_latent": snakemake.input.rf_latent, "cnn_image": snakemake.input.cnn_image},
        metrics_path=snakemake.output.metrics,
        confusion_path=snakemake.output.confusion,
        comparison_path=snakemake.output.comparison,
        seed=snakemake.params.seed,
    )
