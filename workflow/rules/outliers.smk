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
        outliers=config["outliers"],
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
        ENV
    script:
        "../../scripts/outliers.py"
