# Data stage: the mock survey (truth, labels, catalog) and its images per shard.


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


rule data_failures:
    input:
        expand("results/data/shards/failures-{shard}.csv", shard=SHARDS),
    output:
        "results/data/failures.csv",
    log:
        "logs/data/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_DATA
    script:
        "../../scripts/gather_failures.py"


rule figure_survey_examples:
    input:
        image_paths=expand("results/images/{survey}/shard-{shard}.h5", survey=SURVEYS, shard=SHARDS[0]),
        truth_path=mock_truth,
    output:
        pdf="results/figures/survey_examples.pdf",
        png=report(
            "results/figures/survey_examples.png",
            caption="../report/survey_examples.rst",
            category="Data",
        ),
    params:
        figure="survey_examples",
    log:
        "logs/figures/survey_examples.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
