# Data stage, data.source: mock: the mock survey's truth, labels and catalog, and its images per shard.


rule mock_catalog:
    output:
        truth="results/catalog/truth.parquet",
        labels="results/catalog/labels.parquet",
        catalog="results/catalog/catalog.parquet",
        counts="results/catalog/class_counts.csv",
    params:
        seed=config["seed"],
        shard_size=config["shard_size"],
        mock=config["mock"],
        surveys=config["surveys"],
    log:
        "logs/data/mock_catalog.log",
    benchmark:
        "logs/benchmarks/data/mock_catalog.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_DATA
    script:
        "../../scripts/mock_catalog.py"


rule mock_render:
    input:
        truth="results/catalog/truth.parquet",
    output:
        shards=expand("data/mock/{survey}/shard-{{shard}}.h5", survey=SURVEYS),
        failures="results/data/shards/failures-{shard}.csv",
    params:
        seed=config["seed"],
        shard_size=config["shard_size"],
        mock=config["mock"],
        surveys=config["surveys"],
    log:
        "logs/data/render-{shard}.log",
    benchmark:
        "logs/benchmarks/data/render-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        ENV_DATA
    script:
        "../../scripts/mock_render.py"
