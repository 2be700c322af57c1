# Preprocessing stage: background, segmentation, neighbour masks, PSF, normalisation; per shard.


rule preprocess:
    input:
        raw=raw_shard,
        # the catalogue's per-object PSF size (psfsize_<survey>_<band>), when it has one: preprocess.psf
        catalog="results/catalog/catalog.parquet",
    output:
        images="results/images/{survey}/shard-{shard}.h5",
        failures="results/images/{survey}/failures-{shard}.csv",
    params:
        preprocess=lambda w: survey_params(config["preprocess"], w.survey),
    log:
        "logs/preprocess/{survey}-{shard}.log",
    benchmark:
        "logs/benchmarks/preprocess/{survey}-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
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
