# galmap: one Snakemake DAG from raw data to the paper's figures.
# Run: snakemake --cores all            (default config: the embedded mock survey)
#      snakemake --cores all --configfile config/test.yaml   (an overlay: merged on top of the default)
from pathlib import Path

from snakemake.utils import min_version

from galmap.core.config import load_yaml, resolve_config

min_version("9.0")  # as pyproject.toml's snakemake>=9,<10


# The embedded default is always loaded first; Snakemake merges every --configfile (in order) and --config on
# top of it. A key set to null removes what the default has (docs/configuration.md).
configfile: Path(workflow.basedir) / "config" / "config.yaml"


# Nulls removed, then a misspelled key, a wrong type or an impossible value stops the run here with a
# message naming the key (galmap.core.config.ConfigError).
_resolved = resolve_config(
    config,
    load_yaml(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"),
    default=load_yaml(Path(workflow.basedir) / "config" / "config.yaml"),
)
config.clear()
config.update(_resolved)


include: "workflow/rules/common.smk"
include: "workflow/rules/mock.smk" if SOURCE == "mock" else "workflow/rules/realdata.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/structure.smk"
include: "workflow/rules/vae.smk"
include: "workflow/rules/outliers.smk"
include: "workflow/rules/classify.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/domain.smk"
include: "workflow/rules/superres.smk"
include: "workflow/rules/halpha.smk"
include: "workflow/rules/realism.smk"
include: "workflow/rules/unified.smk"
include: "workflow/rules/dvc.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
