# Outliers: galaxies far out in latent space or badly reconstructed, checked against injected anomalies.


rule outliers:
    input:
        latents=f"results/vae/z{LATENT_DIM}/latents.parquet",
        truth=mock_truth,
    output:
        table="results/outliers/outliers.parquet",
        metrics="results/outliers/metrics.csv",
        roc="results/outliers/roc.csv",
    params:
        outliers=OUTLIER_PARAMS,
        seed=config["seed"],
    log:
        "logs/outliers/outliers.log",
    benchmark:
        "logs/benchmarks/outliers/outliers.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_ML
    script:
        "../../scripts/outliers.py"


rule figure_outliers:
    input:
        outliers_path="results/outliers/outliers.parquet",
        roc_path="results/outliers/roc.csv",
        image_paths=vae_images,
        truth_path=mock_truth,
    output:
        pdf="results/figures/outliers.pdf",
        png=report("results/figures/outliers.png", caption="../report/outliers.rst", category="Outliers"),
    params:
        figure="outliers",
    log:
        "logs/figures/outliers.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"


rule anomalies:
    input:
        latents=f"results/vae/z{LATENT_DIM}/latents.parquet",
        morphometry=anomaly_morphometry,
        truth=mock_truth,
        labels=outlier_labels,
        images=vae_images,
    output:
        ranking="results/outliers/ranking.parquet",
        active="results/outliers/active.csv",
        curve="results/outliers/active_curve.csv",
        review=report("results/outliers/review.html", caption="../report/anomalies.rst", category="Outliers"),
        failures="results/outliers/failures.csv",
    params:
        outliers=ANOMALY_PARAMS,
        seed=config["seed"],
    log:
        "logs/outliers/anomalies.log",
    benchmark:
        "logs/benchmarks/outliers/anomalies.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_ML
    script:
        "../../scripts/anomalies.py"
