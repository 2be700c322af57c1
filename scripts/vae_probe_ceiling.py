"""Snakemake script: the probes' ceiling, a CNN trained on the images to the probed truth quantities."""

from galmap.core.joblog import job_log
from galmap.latent.jobs import probe_ceiling_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    probe_ceiling_file(
        snakemake.params.config,
        truth_path=snakemake.input.truth,
        image_paths=list(snakemake.input.images),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        features_path=snakemake.output.features,
        scores_path=snakemake.output.scores,
        threads=snakemake.threads,
    )
