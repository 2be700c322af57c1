# DVC: push the run's data, results and Snakemake metadata so a collaborator can `dvc pull` instead of rerunning.
# Not part of `all`: run `snakemake --cores all dvc_push` (see docs/dvc.md).


rule dvc_push:
    input:
        all_outputs(),
    output:
        "logs/dvc/pushed.txt",
    log:
        "logs/dvc/push.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV_DATA
    script:
        "../../scripts/dvc_push.py"
