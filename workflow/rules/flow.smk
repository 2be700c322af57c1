# Parameters -> images: a conditional normalizing flow p(latents | parameters), decoded by the VAE, measured again.


rule flow_train:
    input:
        latents=f"results/vae/z{LATENT_DIM}/latents.parquet",
        sersic="results/structure/sersic.parquet",
        morphometry="results/structure/morphometry.parquet",
    output:
        model="results/flow/model.pt",
        history="results/flow/history.csv",
        data="results/flow/data.parquet",
        failures="results/flow/train-failures.csv",
    params:
        flow=FLOW_TRAINING,
        seed=config["seed"],
    log:
        "logs/flow/train.log",
    benchmark:
        "logs/benchmarks/flow/train.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=1 if FLOW_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/flow_train.py"


rule flow_closure:
    input:
        flow="results/flow/model.pt",
        vae=f"results/vae/z{LATENT_DIM}/model.pt",
        data="results/flow/data.parquet",
        template=f"results/images/{config['vae']['survey']}/shard-{SHARDS[0]}.h5",
    output:
        closure="results/flow/closure.csv",
        summary="results/flow/closure_spearman.csv",
        gallery="results/flow/gallery.h5",
        failures="results/flow/closure-failures.csv",
    params:
        # the generated images are the VAE survey's: that survey's preprocessing settings only
        config={
            "seed": config["seed"],
            "flow": config["flow"],
            "preprocess": survey_params(config["preprocess"], config["vae"]["survey"]),
            "structure": config["structure"],
        },
    log:
        "logs/flow/closure.log",
    benchmark:
        "logs/benchmarks/flow/closure.tsv"
    # two threads used ~1.1 cores (benchmark cpu_time) while holding two from the scheduler
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=1 if FLOW_GPU else 0,
    conda:
        ENV_ML
    script:
        "../../scripts/flow_closure.py"


rule flow_failures:
    input:
        "results/flow/train-failures.csv",
        "results/flow/closure-failures.csv",
    output:
        "results/flow/failures.csv",
    log:
        "logs/flow/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_ML
    script:
        "../../scripts/gather_failures.py"


rule figure_flow:
    input:
        closure_path="results/flow/closure.csv",
        summary_path="results/flow/closure_spearman.csv",
        gallery_path="results/flow/gallery.h5",
    output:
        pdf="results/figures/flow.pdf",
        png=report("results/figures/flow.png", caption="../report/flow.rst", category="Parameters to images"),
    params:
        figure="flow",
    log:
        "logs/figures/flow.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
