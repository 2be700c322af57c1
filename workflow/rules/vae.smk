# Latent space: one convolutional VAE per latent size, latents per shard, the SSIM scan.


rule vae_train:
    input:
        images=vae_images,
    output:
        model="results/vae/z{k}/model.pt",
        history="results/vae/z{k}/history.csv",
    params:
        vae=VAE_MODEL_PARAMS,
        seed=config["seed"],
    log:
        "logs/vae/train-z{k}.log",
    benchmark:
        "logs/benchmarks/vae/train-z{k}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if GPU_TRAINING else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_train.py"


rule vae_encode:
    input:
        model="results/vae/z{k}/model.pt",
        images=f"results/images/{config['vae']['survey']}/shard-{{shard}}.h5",
    output:
        latents="results/vae/z{k}/shards/latents-{shard}.parquet",
        failures="results/vae/z{k}/shards/failures-{shard}.csv",
    params:
        vae=VAE_MODEL_PARAMS,
        seed=config["seed"],
    log:
        "logs/vae/encode-z{k}-{shard}.log",
    benchmark:
        "logs/benchmarks/vae/encode-z{k}-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=1 if GPU_TRAINING else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_encode.py"


rule vae_latents:
    input:
        expand("results/vae/z{{k}}/shards/latents-{shard}.parquet", shard=SHARDS),
    output:
        "results/vae/z{k}/latents.parquet",
    log:
        "logs/vae/gather-z{k}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/gather_tables.py"


rule vae_failures:
    input:
        expand("results/vae/z{k}/shards/failures-{shard}.csv", k=LATENT_DIM, shard=SHARDS),
    output:
        "results/vae/failures.csv",
    log:
        "logs/vae/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/gather_failures.py"


rule vae_scan:
    input:
        latents=expand("results/vae/z{k}/latents.parquet", k=LATENT_SIZES),
        histories=expand("results/vae/z{k}/history.csv", k=LATENT_SIZES),
    output:
        "results/vae/ssim_vs_latents.csv",
    log:
        "logs/vae/scan.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_scan.py"


rule figure_vae:
    input:
        scan_path="results/vae/ssim_vs_latents.csv",
        model_path=f"results/vae/z{LATENT_DIM}/model.pt",
        images_path=f"results/images/{config['vae']['survey']}/shard-{SHARDS[0]}.h5",
        latents_path=f"results/vae/z{LATENT_DIM}/latents.parquet",
    output:
        pdf="results/figures/vae.pdf",
        png=report("results/figures/vae.png", caption="../report/vae.rst", category="Latent space"),
    params:
        figure="vae",
    log:
        "logs/figures/vae.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
