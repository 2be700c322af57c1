# One latent space for every survey (galmap.unified): train the per-survey encoders and decoders, then encode,
# translate and score (retrieval, invariance, classification, translation against the dedicated models), and the figure.


rule unified_train:
    input:
        unpack(unified_images),
    output:
        model="results/unified/model.pt",
        history="results/unified/history.csv",
    params:
        unified=UNIFIED_TRAIN,
        surveys=UNIFIED_SURVEYS,
        seed=config["seed"],
    log:
        "logs/unified/train.log",
    benchmark:
        "logs/benchmarks/unified/train.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1 if UNIFIED_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/unified_train.py"


rule unified_evaluate:
    input:
        unpack(unified_images),
        unpack(unified_references),
        model="results/unified/model.pt",
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        classify_metrics="results/classify/metrics.csv",
    output:
        latents="results/unified/latents.parquet",
        metrics="results/unified/metrics.csv",
        retrieval="results/unified/retrieval.csv",
        translations="results/unified/translations.h5",
        classification="results/unified/classification.csv",
        failures="results/unified/failures.csv",
    params:
        unified=UNIFIED,
        surveys=UNIFIED_SURVEYS,
        seed=config["seed"],
        classify=CLASSIFY_RF,
        halpha=config["halpha"],
        superres=config["superres"],
    log:
        "logs/unified/evaluate.log",
    benchmark:
        "logs/benchmarks/unified/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        ENV_ML
    script:
        "../../scripts/unified_evaluate.py"


rule figure_unified:
    input:
        translations_path="results/unified/translations.h5",
        retrieval_path="results/unified/retrieval.csv",
        classification_path="results/unified/classification.csv",
        metrics_path="results/unified/metrics.csv",
    output:
        pdf="results/figures/unified.pdf",
        png=report("results/figures/unified.png", caption="../report/unified.rst", category="Unified latent space"),
    params:
        figure="unified",
    log:
        "logs/figures/unified.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
