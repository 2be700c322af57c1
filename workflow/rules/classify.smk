# Classification: random forests on the latents against a multi-head CNN on the images, same splits.


rule classify_targets:
    input:
        labels="results/catalog/labels.parquet",
    output:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
    params:
        classify=CLASSIFY_TARGETS,
        seed=config["seed"],
    log:
        "logs/classify/targets.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/classify_targets.py"


rule classify_rf:
    input:
        targets="results/classify/targets.parquet",
        latents=f"results/vae/z{LATENT_DIM}/latents.parquet",
    output:
        predictions="results/classify/rf_latent/predictions.parquet",
        failures="results/classify/rf_latent/failures.csv",
    params:
        classify=CLASSIFY_RF,
        seed=config["seed"],
    log:
        "logs/classify/rf.log",
    benchmark:
        "logs/benchmarks/classify/rf.tsv"
    # one core: a two-core job waits until both are free and started this 9-s job near the end of the run, delaying
    # classify_metrics and unified_evaluate (the schedule simulated from the second sky's job times: -12 s)
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV_ML
    script:
        "../../scripts/classify_rf.py"


rule classify_cnn:
    input:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        images=vae_images,
    output:
        model="results/classify/cnn_image/model.pt",
        history="results/classify/cnn_image/history.csv",
        predictions="results/classify/cnn_image/predictions.parquet",
        failures="results/classify/cnn_image/failures.csv",
    params:
        classify=CLASSIFY_CNN,
        seed=config["seed"],
    log:
        "logs/classify/cnn.log",
    benchmark:
        "logs/benchmarks/classify/cnn.tsv"
    # two threads used ~1.1 cores (benchmark cpu_time) while holding two from the scheduler
    threads: 1
    priority: 5  # heads the longest chain (domain adaptation of every pair reads its model)
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if CNN_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/classify_cnn.py"


rule classify_metrics:
    input:
        targets="results/classify/targets.parquet",
        classes="results/classify/classes.csv",
        rf_latent="results/classify/rf_latent/predictions.parquet",
        cnn_image="results/classify/cnn_image/predictions.parquet",
    output:
        metrics="results/classify/metrics.csv",
        confusion="results/classify/confusion.csv",
        comparison="results/classify/comparison.csv",
    params:
        seed=config["seed"],
    log:
        "logs/classify/metrics.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/classify_metrics.py"


rule classify_failures:
    input:
        "results/classify/rf_latent/failures.csv",
        "results/classify/cnn_image/failures.csv",
    output:
        "results/classify/failures.csv",
    log:
        "logs/classify/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/gather_failures.py"


rule figure_classify:
    input:
        metrics_path="results/classify/metrics.csv",
        confusion_path="results/classify/confusion.csv",
    output:
        pdf="results/figures/classify.pdf",
        png=report("results/figures/classify.png", caption="../report/classify.rst", category="Classification"),
    params:
        figure="classify",
    log:
        "logs/figures/classify.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
