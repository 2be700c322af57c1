# u,g,r,i,z -> Hα: a U-Net trained with a noise-aware loss predicts the Hα map from the broad bands.


rule halpha_train:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
    output:
        model="results/halpha/model.pt",
        history="results/halpha/history.csv",
    params:
        halpha=HALPHA_TRAIN_PARAMS,
        seed=config["seed"],
        kind="mean",
    log:
        "logs/halpha/train.log",
    benchmark:
        "logs/benchmarks/halpha/train.tsv"
    priority: 5  # the longest one-core job: started early, it no longer leaves a core idle at the end
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=1 if HALPHA_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/halpha_train.py"


rule halpha_evaluate:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
        model="results/halpha/model.pt",
        truth=mock_truth,
    output:
        metrics="results/halpha/metrics.csv",
        predictions="results/halpha/predictions.parquet",
        examples="results/halpha/examples.h5",
        failures="results/halpha/failures.csv",
    params:
        halpha=HALPHA_EVAL_PARAMS,
        seed=config["seed"],
    log:
        "logs/halpha/evaluate.log",
    benchmark:
        "logs/benchmarks/halpha/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV_ML
    script:
        "../../scripts/halpha_evaluate.py"


rule halpha_diffusion_train:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
    output:
        model="results/halpha/diffusion/model.pt",
        history="results/halpha/diffusion/history.csv",
    params:
        halpha=HALPHA_DIFFUSION_TRAIN_PARAMS,
        seed=config["seed"],
        kind="diffusion",
    log:
        "logs/halpha/diffusion_train.log",
    benchmark:
        "logs/benchmarks/halpha/diffusion_train.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
        gpu=1 if HALPHA_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/halpha_train.py"


rule halpha_diffusion_evaluate:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
        model="results/halpha/diffusion/model.pt",
        truth=mock_truth,
    output:
        metrics="results/halpha/diffusion/metrics.csv",
        predictions="results/halpha/diffusion/predictions.parquet",
        failures="results/halpha/diffusion/failures.csv",
    params:
        halpha=config["halpha"],
        seed=config["seed"],
    log:
        "logs/halpha/diffusion_evaluate.log",
    benchmark:
        "logs/benchmarks/halpha/diffusion_evaluate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=1 if HALPHA_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/halpha_evaluate.py"


rule figure_halpha:
    input:
        metrics_path="results/halpha/metrics.csv",
        predictions_path="results/halpha/predictions.parquet",
        examples_path="results/halpha/examples.h5",
    output:
        pdf="results/figures/halpha.pdf",
        png=report("results/figures/halpha.png", caption="../report/halpha.rst", category="Images to images"),
    params:
        figure="halpha",
    log:
        "logs/figures/halpha.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
