# u,g,r,i,z -> Hα: a U-Net trained with a noise-aware loss predicts the Hα map from the broad bands (model
# regression); with halpha.diffusion.enabled, a conditional diffusion model draws it too (model diffusion).


rule halpha_train:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
    output:
        model="results/halpha/{model}/model.pt",
        history="results/halpha/{model}/history.csv",
    params:
        halpha=halpha_train_params,
        seed=config["seed"],
    wildcard_constraints:
        model="regression|diffusion",
    log:
        "logs/halpha/train-{model}.log",
    benchmark:
        "logs/benchmarks/halpha/train-{model}.tsv"
    priority: 5  # the longest one-core job: started early, it no longer leaves a core idle at the end
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wildcards: 60 if wildcards.model == "diffusion" else 30,
        gpu=1 if HALPHA_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/halpha_train.py"


rule halpha_evaluate:
    input:
        inputs=HALPHA_INPUT,
        target=HALPHA_TARGET,
        model="results/halpha/regression/model.pt",
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
