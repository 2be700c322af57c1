"""Snakemake script: the mock volunteers' votes and classes (labels, class counts) from the truth table."""

from galmap.core.joblog import job_log
from galmap.mock.jobs import make_mock_labels

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    make_mock_labels(
        snakemake.params.seed,
        snakemake.params.volunteers,
        dict(snakemake.params.survey),
        visibility=dict(snakemake.params.visibility),
        truth_path=snakemake.input.truth,
        labels_path=snakemake.output.labels,
        counts_path=snakemake.output.counts,
    )
