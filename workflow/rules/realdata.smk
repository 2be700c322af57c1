# Data stage, data.source: local (a folder of FITS cutouts) or legacysurvey (Galaxy Zoo DECaLS from
# Zenodo + Legacy Survey cutouts; MaNGA Hα maps + u,g,r,i,z preimaging for data.manga.plateifus):
# the catalog and labels, the downloads, and the raw shards.

if SOURCE == "local":

    rule local_catalog:
        output:
            catalog="results/catalog/catalog.parquet",
            labels="results/catalog/labels.parquet",
            failures="results/data/catalog_failures.csv",
        params:
            **DATA_PARAMS,
        log:
            "logs/data/local_catalog.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV_DATA
        script:
            "../../scripts/local_catalog.py"

else:

    rule legacysurvey_catalog:
        output:
            catalog="results/catalog/catalog.parquet",
            labels="results/catalog/labels.parquet",
            counts="results/catalog/class_counts.csv",
            failures="results/data/catalog_failures.csv",
        params:
            **DATA_PARAMS,
            folder="data/legacysurvey/catalog",
        log:
            "logs/data/legacysurvey_catalog.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        conda:
            ENV_DATA
        script:
            "../../scripts/legacysurvey_catalog.py"

    rule legacysurvey_download:
        input:
            catalog="results/catalog/catalog.parquet",
        output:
            manifest="data/legacysurvey/{survey}/downloads-{shard}.csv",
        params:
            **DATA_PARAMS,
            folder=lambda wc: f"data/legacysurvey/cutouts/{wc.survey}",
        log:
            "logs/data/download-{survey}-{shard}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=120,
        conda:
            ENV_DATA
        script:
            "../../scripts/legacysurvey_download.py"

    if MANGA:

        rule manga_download:
            output:
                maps=f"data/manga/{MANGA['halpha']}/downloads-{{shard}}.csv",
                preimaging=f"data/manga/{MANGA['ugriz']}/downloads-{{shard}}.csv",
            params:
                **DATA_PARAMS,
                folder="data/manga/files",
            log:
                "logs/data/manga-download-{shard}.log",
            localrule: True
            threads: 1
            resources:
                mem_mb=1000,
                runtime=120,
            conda:
                ENV_DATA
            script:
                "../../scripts/manga_download.py"


rule ingest:
    input:
        table=ingest_table,
    output:
        shard=f"data/{SOURCE}/{{survey}}/shard-{{shard}}.h5",
        failures="results/data/shards/failures-{survey}-{shard}.csv",
    params:
        **DATA_PARAMS,
    log:
        "logs/data/ingest-{survey}-{shard}.log",
    benchmark:
        "logs/benchmarks/data/ingest-{survey}-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        ENV_DATA
    script:
        "../../scripts/ingest.py"
