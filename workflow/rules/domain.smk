# Survey A -> survey B: the source CNN on the target survey, unadapted, with AdaBN, with DANN and distilled
# on the overlap (no target label).


rule domain_target:
    input:
        source=f"results/images/{VAE_SURVEY}/shard-{{shard}}.h5",
        target=expand("results/images/{survey}/shard-{{shard}}.h5", survey=DOMAIN_TARGETS),
    output:
        images="results/domain/target/shard-{shard}.h5",
        failures="results/domain/target/failures-{shard}.csv",
    params:
        target_bands=config["domain"]["target_bands"],
        target_surveys=DOMAIN_TARGETS,
    log:
        "logs/domain/target-{shard}.log",
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
        target=expand("results/domain/target/shard-{shard}.h5", shard=SHARDS),
    output:
        model="results/domain/dann/model.pt",
        history="results/domain/dann/history.csv",
    params:
        dann=config["domain"]["dann"],
        seed=config["seed"],
    log:
        "logs/domain/dann.log",
    benchmark:
        "logs/benchmarks/domain/dann.tsv"
    threads: 2
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
        target=expand("results/domain/target/shard-{shard}.h5", shard=SHARDS),
    output:
        model="results/domain/distill/model.pt",
        history="results/domain/distill/history.csv",
    params:
        distill=config["domain"]["distill"],
        seed=config["seed"],
    log:
        "logs/domain/distill.log",
    benchmark:
        "logs/benchmarks/domain/distill.tsv"
    threads: 2
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
        images=expand("results/domain/target/shard-{shard}.h5", shard=SHARDS),
    output:
        model="results/domain/target_supervised/model.pt",
        history="results/domain/target_supervised/history.csv",
        predictions="results/domain/target_supervised/predictions.parquet",
        failures="results/domain/target_supervised/failures.csv",
    params:
        classify=CLASSIFY_CNN,
        seed=config["seed"],
    log:
        "logs/domain/reference.log",
    benchmark:
        "logs/benchmarks/domain/reference.tsv"
    threads: 2
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
        dann="results/domain/dann/model.pt",
        distill="results/domain/distill/model.pt",
        source=vae_images,
        target=expand("results/domain/target/shard-{shard}.h5", shard=SHARDS),
    output:
        predictions="results/domain/predictions.parquet",
        failures="results/domain/predict-failures.csv",
    params:
        batch_size=config["domain"]["batch_size"],
    log:
        "logs/domain/predict.log",
    threads: 2
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
        predictions="results/domain/predictions.parquet",
    output:
        metrics="results/domain/metrics.csv",
    log:
        "logs/domain/metrics.log",
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
        expand("results/domain/target/failures-{shard}.csv", shard=SHARDS),
        "results/domain/predict-failures.csv",
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
        target_path=f"results/domain/target/shard-{SHARDS[0]}.h5",
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
