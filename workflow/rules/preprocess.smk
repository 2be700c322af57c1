# Preprocessing stage: background, segmentation, neighbour masks, PSF, normalisation; one job per shard, for every
# survey with those shards (each survey's images and failures in their own files, as one job per survey would write).

if PREPROCESS_SURVEYS:

    rule preprocess:
        input:
            raw=expand(f"data/{SOURCE}/{{survey}}/shard-{{{{shard}}}}.h5", survey=PREPROCESS_SURVEYS),
            # the catalogue's per-object PSF size (psfsize_<survey>_<band>), when it has one: preprocess.psf
            catalog="results/catalog/catalog.parquet",
        output:
            images=expand("results/images/{survey}/shard-{{shard}}.h5", survey=PREPROCESS_SURVEYS),
            failures=expand("results/images/{survey}/failures-{{shard}}.csv", survey=PREPROCESS_SURVEYS),
        params:
            # by survey, in the order of the inputs and outputs
            preprocess=PREPROCESS_PARAMS,
        log:
            "logs/preprocess/shard-{shard}.log",
        benchmark:
            "logs/benchmarks/preprocess/shard-{shard}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=40,
        conda:
            ENV_DATA
        script:
            "../../scripts/preprocess_shard.py"


if MANGA_PREPROCESS_SURVEYS:

    # MaNGA's surveys (data.manga) have their own shards: one job per MaNGA shard
    rule preprocess_manga:
        input:
            raw=expand(f"data/{SOURCE}/{{survey}}/shard-{{{{shard}}}}.h5", survey=MANGA_PREPROCESS_SURVEYS),
            catalog="results/catalog/catalog.parquet",
        output:
            images=expand("results/images/{survey}/shard-{{shard}}.h5", survey=MANGA_PREPROCESS_SURVEYS),
            failures=expand("results/images/{survey}/failures-{{shard}}.csv", survey=MANGA_PREPROCESS_SURVEYS),
        params:
            preprocess=MANGA_PREPROCESS_PARAMS,
        log:
            "logs/preprocess/manga-{shard}.log",
        benchmark:
            "logs/benchmarks/preprocess/manga-{shard}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=40,
        conda:
            ENV_DATA
        script:
            "../../scripts/preprocess_shard.py"


rule preprocess_failures:
    input:
        every_survey_shard("results/images/{survey}/failures-{shard}.csv"),
    output:
        "results/preprocess/failures.csv",
    log:
        "logs/preprocess/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_DATA
    script:
        "../../scripts/gather_failures.py"
