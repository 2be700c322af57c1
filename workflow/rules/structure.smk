# Structure stage: batched PSF-convolved Sérsic fits and statmorph morphometry, per shard.


rule sersic:
    input:
        images=structure_images,
    output:
        table="results/structure/shards/sersic-{shard}.parquet",
        failures="results/structure/shards/sersic-failures-{shard}.csv",
    params:
        kind="sersic",
        structure=SERSIC_PARAMS,
    log:
        "logs/structure/sersic-{shard}.log",
    benchmark:
        "logs/benchmarks/structure/sersic-{shard}.tsv"
    # Early: the flow, its figure and the superres models (their Sérsic base) wait on these fits. One
    # thread: on 2 cores a 2-thread job waits until both are free at once, which the scheduler's
    # stream of 1-thread jobs delayed to the last quarter of the run (25 s of CPU per shard).
    priority: 5
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV_STRUCTURE
    script:
        "../../scripts/structure_shard.py"


rule morphometry:
    input:
        images=structure_images,
    output:
        table="results/structure/shards/morphometry-{shard}.parquet",
        failures="results/structure/shards/morphometry-failures-{shard}.csv",
    params:
        kind="morphometry",
        structure=MORPH_PARAMS,
    log:
        "logs/structure/morphometry-{shard}.log",
    benchmark:
        "logs/benchmarks/structure/morphometry-{shard}.tsv"
    # Early: the flow and its figure wait on the structure tables, and a late 2-thread Sérsic job
    # left the pipeline ending in a serial tail.
    priority: 5
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        ENV_STRUCTURE
    script:
        "../../scripts/structure_shard.py"


rule structure_tables:
    input:
        expand("results/structure/shards/{{kind}}-{shard}.parquet", shard=SHARDS),
    output:
        "results/structure/{kind}.parquet",
    wildcard_constraints:
        kind="sersic|morphometry",
    log:
        "logs/structure/gather-{kind}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_STRUCTURE
    script:
        "../../scripts/gather_tables.py"


rule structure_failures:
    input:
        expand("results/structure/shards/{kind}-failures-{shard}.csv", kind=["sersic", "morphometry"], shard=SHARDS),
    output:
        "results/structure/failures.csv",
    log:
        "logs/structure/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_STRUCTURE
    script:
        "../../scripts/gather_failures.py"


rule figure_sersic_truth:
    input:
        sersic_path="results/structure/sersic.parquet",
        truth_path="results/catalog/truth.parquet",
    output:
        pdf="results/figures/sersic_truth.pdf",
        png=report(
            "results/figures/sersic_truth.png",
            caption="../report/sersic_truth.rst",
            category="Structure",
        ),
    params:
        figure="sersic_truth",
    log:
        "logs/figures/sersic_truth.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"


rule figure_morphometry:
    input:
        morph_path="results/structure/morphometry.parquet",
        truth_path=mock_truth,
    output:
        pdf="results/figures/morphometry.pdf",
        png=report(
            "results/figures/morphometry.png",
            caption="../report/morphometry.rst",
            category="Structure",
        ),
    params:
        figure="morphometry",
    log:
        "logs/figures/morphometry.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"


rule figure_sersic_residuals:
    input:
        sersic_path="results/structure/sersic.parquet",
        images_path=f"results/images/{config['structure']['survey']}/shard-{SHARDS[0]}.h5",
        truth_path=mock_truth,
    output:
        pdf="results/figures/sersic_residuals.pdf",
        png=report(
            "results/figures/sersic_residuals.png",
            caption="../report/sersic_residuals.rst",
            category="Structure",
        ),
    params:
        figure="sersic_residuals",
    log:
        "logs/figures/sersic_residuals.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
