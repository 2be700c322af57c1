"""Snakemake script: encode, translate and score the unified latent space on the held-out galaxies."""

from galmap.core.joblog import job_log
from galmap.unified.jobs import unified_evaluate_file

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake

inputs = snakemake.input
with job_log(snakemake.log[0]):
    unified_evaluate_file(
        snakemake.params.unified,
        snakemake.params.seed,
        {s: list(inputs[s]) for s in snakemake.params.surveys},
        model_path=inputs.model,
        targets_path=inputs.targets,
        classes_path=inputs.classes,
        classify_params=snakemake.params.classify,
        classify_metrics_path=inputs.classify_metrics,
        outputs={k: snakemake.output[k] for k in snakemake.output.keys()},
        halpha={"params": snakemake.params.halpha, "metrics": inputs.halpha_metrics}
        if "halpha_metrics" in inputs.keys()
        else None,
        superres={
            "params": snakemake.params.superres,
            "metrics": inputs.superres_metrics,
            "re_compare": inputs.superres_re,
        }
        if "superres_metrics" in inputs.keys()
        else None,
        truth_path=inputs.truth if "truth" in inputs.keys() else None,
        threads=snakemake.threads,
    )
