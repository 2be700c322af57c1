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
        ["results/vae/noiseless/failures.csv"] if SOURCE == "mock" else [],
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


if SOURCE == "mock":

    rule vae_noiseless:
        input:
            truth="results/catalog/truth.parquet",
            images=vae_images,
        output:
            shard="results/vae/noiseless/test.h5",
            failures="results/vae/noiseless/failures.csv",
        params:
            config={"seed": config["seed"], "surveys": config["surveys"], "vae": VAE_PROBE_PARAMS},
        log:
            "logs/vae/noiseless.log",
        benchmark:
            "logs/benchmarks/vae/noiseless.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV_DATA
        script:
            "../../scripts/vae_noiseless.py"


rule vae_morphology:
    input:
        unpack(vae_noiseless),
        model="results/vae/z{k}/model.pt",
        images=vae_images,
    output:
        "results/vae/z{k}/morphology.parquet",
    params:
        vae=VAE_PROBE_PARAMS,
        seed=config["seed"],
    log:
        "logs/vae/morphology-z{k}.log",
    benchmark:
        "logs/benchmarks/vae/morphology-z{k}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_morphology.py"


rule vae_probe_ceiling:
    input:
        truth="results/catalog/truth.parquet",
        images=vae_images,
    output:
        model="results/vae/probe_ceiling/model.pt",
        history="results/vae/probe_ceiling/history.csv",
        features="results/vae/probe_ceiling/features.parquet",
        scores="results/vae/probe_ceiling/scores.csv",
    params:
        config={
            "seed": config["seed"],
            "vae": VAE_PROBE_PARAMS,
            "classify": {"cnn": config["classify"]["cnn"]},
        },
    log:
        "logs/vae/probe_ceiling.log",
    benchmark:
        "logs/benchmarks/vae/probe_ceiling.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1 if CNN_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_probe_ceiling.py"


rule vae_probes:
    input:
        latents=expand("results/vae/z{k}/latents.parquet", k=LATENT_SIZES),
        truth="results/catalog/truth.parquet",
        ceiling="results/vae/probe_ceiling/scores.csv",
    output:
        "results/vae/probes.csv",
    params:
        vae=VAE_PROBE_PARAMS,
        seed=config["seed"],
    log:
        "logs/vae/probes.log",
    benchmark:
        "logs/benchmarks/vae/probes.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    conda:
        ENV_ML
    script:
        "../../scripts/vae_probes.py"


rule vae_scan:
    input:
        latents=expand("results/vae/z{k}/latents.parquet", k=LATENT_SIZES),
        histories=expand("results/vae/z{k}/history.csv", k=LATENT_SIZES),
        morphology=expand("results/vae/z{k}/morphology.parquet", k=LATENT_SIZES),
        truth=mock_truth,
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
        probes_path=["results/vae/probes.csv"] if SOURCE == "mock" else [],
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
