# Data stage, for every source: the failures table and the survey examples figure.
# The source's own rules: mock.smk (data.source: mock) or realdata.smk (local, legacysurvey).


rule data_failures:
    input:
        data_failure_tables(),
    output:
        "results/data/failures.csv",
    log:
        "logs/data/failures.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_DATA
    script:
        "../../scripts/gather_failures.py"


rule figure_survey_examples:
    input:
        image_paths=expand("results/images/{survey}/shard-{shard}.h5", survey=SURVEYS, shard=SHARDS[0]),
        truth_path=mock_truth,
    output:
        pdf="results/figures/survey_examples.pdf",
        png=report(
            "results/figures/survey_examples.png",
            caption="../report/survey_examples.rst",
            category="Data",
        ),
    params:
        figure="survey_examples",
    log:
        "logs/figures/survey_examples.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV_FIGURES
    script:
        "../../scripts/figure.py"
