"""Snakemake script: the questions' classes and their stratified train/val/test splits."""

from galmap.classify.jobs import classify_targets_file
from galmap.core.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    classify_targets_file(
        snakemake.params.classify,
        snakemake.params.seed,
        labels_path=snakemake.input.labels,
        targets_path=snakemake.output.targets,
        classes_path=snakemake.output.classes,
    )
