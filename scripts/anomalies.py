"""Snakemake script: the anomaly search (ranking, artefact flag, expert labels, simulated expert, review page)."""

from galmap.anomalies.jobs import anomalies_file
from galmap.core.joblog import job_log

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    anomalies_file(
        snakemake.params.outliers,
        snakemake.params.seed,
        latents_path=snakemake.input.latents,
        morphometry_path=next(iter(snakemake.input.morphometry), None),
        truth_path=next(iter(snakemake.input.truth), None),
        labels_path=next(iter(snakemake.input.labels), None),
        image_paths=list(snakemake.input.images),
        ranking_path=snakemake.output.ranking,
        active_path=snakemake.output.active,
        curve_path=snakemake.output.curve,
        review_path=snakemake.output.review,
        failures_path=snakemake.output.failures,
    )
