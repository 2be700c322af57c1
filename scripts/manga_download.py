"""Snakemake script: fetch one shard of the MaNGA sample: DAP Hα maps, then the u,g,r,i,z preimaging."""

from galmap.core.joblog import job_log
from galmap.data.jobs import manga_download_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

with job_log(snakemake.log[0]):
    manga_download_file(
        dict(snakemake.params.items()),
        shard=int(snakemake.wildcards.shard),
        folder=snakemake.params.folder,
        maps_manifest=snakemake.output.maps,
        preimaging_manifest=snakemake.output.preimaging,
    )
