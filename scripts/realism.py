"""Snakemake script: the realism stage (mock vs real Galaxy Zoo DECaLS images)."""

from galmap.core.joblog import job_log
from galmap.realism.jobs import run_realism

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    run_realism(
        dict(snakemake.params.items()),
        truth_path=snakemake.input.truth,
        labels_path=snakemake.input.labels,
        outputs=dict(snakemake.output.items()),
    )
