# DESI -> Euclid super-resolution: a conditional diffusion model, a regression U-Net and bicubic upsampling.


rule superres_train:
    input:
        source=SUPERRES_SOURCE,
        target=SUPERRES_TARGET,
        sersic=SUPERRES_SERSIC,
    output:
        model="results/superres/{model}/model.pt",
        history="results/superres/{model}/history.csv",
    params:
        superres=superres_train_params,
        seed=config["seed"],
    log:
        "logs/superres/train-{model}.log",
    benchmark:
        "logs/benchmarks/superres/train-{model}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=1 if SUPERRES_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/superres_train.py"


rule superres_evaluate:
    input:
        source=SUPERRES_SOURCE,
        target=SUPERRES_TARGET,
        sersic=SUPERRES_SERSIC,
        diffusion="results/superres/diffusion/model.pt",
        regression="results/superres/regression/model.pt",
    output:
        metrics="results/superres/metrics.csv",
        re_compare="results/superres/re_compare.parquet",
        examples="results/superres/examples.h5",
        failures="results/superres/failures.csv",
    params:
        superres=SUPERRES_EVALUATE_PARAMS,
        seed=config["seed"],
    log:
        "logs/superres/evaluate.log",
    benchmark:
        "logs/benchmarks/superres/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=1 if SUPERRES_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/superres_evaluate.py"


rule superres_structure:
    input:
        source=SUPERRES_SOURCE,
        target=SUPERRES_TARGET,
        sersic=SUPERRES_SERSIC,
        truth=SUPERRES_TRUTH,
        diffusion="results/superres/diffusion/model.pt",
        regression="results/superres/regression/model.pt",
    output:
        structure="results/superres/structure.csv",
        galaxies="results/superres/structure_galaxies.parquet",
        calibration="results/superres/calibration.csv",
    params:
        superres=SUPERRES_STRUCTURE_PARAMS,
        seed=config["seed"],
        mock={"seed": config["seed"], "surveys": config["surveys"]},
    log:
        "logs/superres/structure.log",
    benchmark:
        "logs/benchmarks/superres/structure.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=1 if SUPERRES_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/superres_structure.py"


rule superres_apply:
    input:
        cutout=superres_apply_cutout,
        source_ref=SUPERRES_SOURCE[0],
        target_ref=SUPERRES_TARGET[0],
        calibration="results/superres/calibration.csv",
        diffusion="results/superres/diffusion/model.pt",
        regression="results/superres/regression/model.pt",
    output:
        table="results/superres/apply/{name}.csv",
        figure="results/superres/apply/{name}.png",
    params:
        superres=config["superres"],
        structure=SERSIC_PARAMS,
        preprocess=config["preprocess"],
        seed=config["seed"],
    log:
        "logs/superres/apply-{name}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_ML
    script:
        "../../scripts/superres_apply.py"


rule figure_superres:
    input:
        metrics_path="results/superres/metrics.csv",
        re_path="results/superres/re_compare.parquet",
        examples_path="results/superres/examples.h5",
    output:
        pdf="results/figures/superres.pdf",
        png=report("results/figures/superres.png", caption="../report/superres.rst", category="Images to images"),
    params:
        figure="superres",
    log:
        "logs/figures/superres.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
