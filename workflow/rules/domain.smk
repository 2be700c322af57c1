# Survey A -> survey B, for every pair of domain.pairs: the source CNN (shared) on the target survey, unadapted,
# with AdaBN, with DANN and distilled on the overlap (no target label). One job per pair and step.


rule domain_target:
    input:
        source=f"results/images/{VAE_SURVEY}/shard-{{shard}}.h5",
        target=domain_target_components,
    output:
        images="results/domain/{pair}/target/shard-{shard}.h5",
        failures="results/domain/{pair}/target/failures-{shard}.csv",
    params:
        target_bands=domain_target_bands,
        target_surveys=domain_target_survey_names,
    log:
        "logs/domain/{pair}/target-{shard}.log",
    benchmark:
        "logs/benchmarks/domain/{pair}/target-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_ML
    script:
        "../../scripts/domain_target.py"


rule domain_dann:
    input:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        classifier="results/classify/cnn_image/model.pt",
        source=vae_images,
        target=domain_pair_shards,
    output:
        model="results/domain/{pair}/dann/model.pt",
        history="results/domain/{pair}/dann/history.csv",
    params:
        dann=domain_dann_params,
        seed=config["seed"],
    log:
        "logs/domain/{pair}/dann.log",
    benchmark:
        "logs/benchmarks/domain/{pair}/dann.tsv"
    # two threads used ~1.5 cores; a two-core job waits for both cores and left one idle (issue 28's run)
    threads: 1
    priority: 5  # on the longest chain (classify_cnn -> dann -> distill -> predict)
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if DANN_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/domain_dann.py"


rule domain_distill:
    input:
        targets="results/classify/targets.parquet",
        classifier="results/classify/cnn_image/model.pt",
        source=vae_images,
        target=domain_pair_shards,
    output:
        model="results/domain/{pair}/distill/model.pt",
        history="results/domain/{pair}/distill/history.csv",
    params:
        distill=domain_distill_params,
        seed=config["seed"],
    log:
        "logs/domain/{pair}/distill.log",
    benchmark:
        "logs/benchmarks/domain/{pair}/distill.tsv"
    # two threads used ~1.5 cores; a two-core job waits for both cores and left one idle (issue 28's run)
    threads: 1
    priority: 5  # on the longest chain (classify_cnn -> dann -> distill -> predict)
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if DISTILL_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/domain_distill.py"


rule domain_reference:
    input:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        images=domain_pair_shards,
    output:
        model="results/domain/{pair}/target_supervised/model.pt",
        history="results/domain/{pair}/target_supervised/history.csv",
        predictions="results/domain/{pair}/target_supervised/predictions.parquet",
        failures="results/domain/{pair}/target_supervised/failures.csv",
    params:
        classify=CLASSIFY_CNN,
        seed=config["seed"],
    log:
        "logs/domain/{pair}/reference.log",
    benchmark:
        "logs/benchmarks/domain/{pair}/reference.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if CNN_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/classify_cnn.py"


rule domain_predict:
    input:
        unpack(domain_reference_model),
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        classifier="results/classify/cnn_image/model.pt",
        dann="results/domain/{pair}/dann/model.pt",
        distill="results/domain/{pair}/distill/model.pt",
        source=vae_images,
        target=domain_pair_shards,
    output:
        predictions="results/domain/{pair}/predictions.parquet",
        failures="results/domain/{pair}/predict-failures.csv",
    params:
        batch_size=config["domain"]["batch_size"],
    log:
        "logs/domain/{pair}/predict.log",
    benchmark:
        "logs/benchmarks/domain/{pair}/predict.tsv"
    # two threads used ~1.5 cores; a two-core job waits for both cores and left one idle (issue 28's run)
    threads: 1
    priority: 5  # on the longest chain (classify_cnn -> dann -> distill -> predict)
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        ENV_ML
    script:
        "../../scripts/domain_predict.py"


rule domain_metrics:
    input:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        predictions=expand("results/domain/{pair}/predictions.parquet", pair=DOMAIN_PAIRS),
    output:
        metrics="results/domain/metrics.csv",
        summary="results/domain/summary.csv",
    params:
        pairs=list(DOMAIN_PAIRS),
        resamples=config["domain"]["bootstrap_resamples"],
        seed=config["seed"],
    log:
        "logs/domain/metrics.log",
    benchmark:
        "logs/benchmarks/domain/metrics.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/domain_metrics.py"


rule domain_failures:
    input:
        expand("results/domain/{pair}/target/failures-{shard}.csv", pair=DOMAIN_PAIRS, shard=SHARDS),
        expand("results/domain/{pair}/predict-failures.csv", pair=DOMAIN_PAIRS),
    output:
        "results/domain/failures.csv",
    log:
        "logs/domain/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/gather_failures.py"


rule figure_domain:
    input:
        metrics_path="results/domain/metrics.csv",
        source_path=f"results/images/{VAE_SURVEY}/shard-{SHARDS[0]}.h5",
        target_path=f"results/domain/{DOMAIN_FIGURE_PAIR}/target/shard-{SHARDS[0]}.h5",
    output:
        pdf="results/figures/domain.pdf",
        png=report("results/figures/domain.png", caption="../report/domain.rst", category="Domain adaptation"),
    params:
        figure="domain",
    log:
        "logs/figures/domain.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
