# galmap: one Snakemake DAG from raw data to the paper's figures.
# Run: snakemake --cores all            (default config: the embedded mock survey)
#      snakemake --cores all --configfile config/test.yaml
from pathlib import Path

from galmap.core.config import load_yaml, validate_config

# The embedded default, unless the user names a config with --configfile.
if not workflow.config_settings.configfiles:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


# A misspelled key, a wrong type or an impossible value stops the run here with a
# message naming the key (galmap.core.config.ConfigError).
config.update(
    validate_config(config, load_yaml(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"))
)


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
include: "workflow/rules/dvc.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
