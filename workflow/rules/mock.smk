# Data stage, data.source: mock: the mock survey's truth and catalog, its volunteers' labels, and its
# images per shard. The volunteers are their own rule: changing them reruns the labels, not the images.


rule mock_catalog:
    output:
        truth="results/catalog/truth.parquet",
        catalog="results/catalog/catalog.parquet",
    params:
        seed=config["seed"],
        shard_size=config["shard_size"],
        mock=MOCK_POPULATION,
        surveys=config["surveys"],
        label_survey=MOCK_LABEL_SURVEY,
        visibility=config["mock"]["visibility"],
    log:
        "logs/data/mock_catalog.log",
    benchmark:
        "logs/benchmarks/data/mock_catalog.tsv"
    # the features' visibility renders over two processes (the first job: nothing else can run)
    threads: 2
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_DATA
    script:
        "../../scripts/mock_catalog.py"


rule mock_labels:
    input:
        truth="results/catalog/truth.parquet",
    output:
        labels="results/catalog/labels.parquet",
        counts="results/catalog/class_counts.csv",
    params:
        seed=config["seed"],
        volunteers=config["mock"]["volunteers"],
        visibility=config["mock"]["visibility"],
        survey={MOCK_LABEL_SURVEY: config["surveys"][MOCK_LABEL_SURVEY]},
    log:
        "logs/data/mock_labels.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_DATA
    script:
        "../../scripts/mock_labels.py"


rule mock_render:
    input:
        truth="results/catalog/truth.parquet",
    output:
        shards=expand("data/mock/{survey}/shard-{{shard}}.h5", survey=SURVEYS),
        failures="results/data/shards/failures-{shard}.csv",
    params:
        seed=config["seed"],
        shard_size=config["shard_size"],
        mock=MOCK_POPULATION,
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
