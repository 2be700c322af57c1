"""Snakemake script: render one shard of the mock survey in every configured survey."""

from galmap.core.joblog import job_log
from galmap.mock.jobs import render_mock_shard

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    render_mock_shard(
        dict(snakemake.params.items()),
        truth_path=snakemake.input.truth,
        shard=int(snakemake.wildcards.shard),
        outputs=dict(zip(list(snakemake.params.surveys), snakemake.output.shards, strict=True)),
        failures_path=snakemake.output.failures,
    )
