# Realism stage: mock galaxies drawn afresh as Galaxy Zoo DECaLS colour images, compared with real ones
# (classifier two-sample test, KS distances of image statistics and of vote fractions), and the figure.


rule realism:
    input:
        truth="results/catalog/truth.parquet",
        labels="results/catalog/labels.parquet",
    output:
        c2st="results/realism/c2st.csv",
        votes="results/realism/votes.csv",
        stats="results/realism/stats.parquet",
        examples="results/realism/examples.npz",
        failures="results/realism/failures.csv",
    params:
        seed=config["seed"],
        surveys=config["surveys"],
        mock={"neighbours": config.get("mock", {}).get("neighbours", {})},  # the frames' neighbours: the stamps' number counts
        realism=config["realism"],
    log:
        "logs/realism/realism.log",
    benchmark:
        "logs/benchmarks/realism/realism.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=15,
    conda:
        ENV_ML
    script:
        "../../scripts/realism.py"


rule figure_realism:
    input:
        examples_path="results/realism/examples.npz",
        c2st_path="results/realism/c2st.csv",
    output:
        pdf="results/figures/realism.pdf",
        png=report("results/figures/realism.png", caption="../report/realism.rst", category="Realism"),
    params:
        figure="realism",
    log:
        "logs/figures/realism.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
