"""Snakemake script: train the unified model on every survey's preprocessed shards."""

from galmap.core.joblog import job_log
from galmap.unified.jobs import unified_train_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    unified_train_file(
        snakemake.params.unified,
        snakemake.params.seed,
        {s: list(snakemake.input[s]) for s in snakemake.params.surveys},
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        threads=snakemake.threads,
    )
