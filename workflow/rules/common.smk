# Shared names and input functions. No computation here: the library does that.
import os
from snakemake.logging import logger

from galmap.preprocess.settings import survey_params
from galmap.domain.pairs import domain_pairs, pair_settings, target_surveys
from galmap.data.plan import (
    domain_plan,
    manga_surveys,
    shard_names,
    skipped_messages,
    source_surveys,
    stage_plan,
    survey_shards,
    usable_questions,
)

SOURCE = config["data"]["source"]
# the configured surveys the data provide (every survey for the mock; one for a local folder)
SURVEYS = source_surveys(config)
SHARDS = shard_names(config)
# MaNGA (data.manga, real data): its galaxies are their own sample, so its surveys have their own shards
MANGA = manga_surveys(config)
SURVEY_SHARDS = {survey: survey_shards(config, survey) for survey in SURVEYS}
# preprocessing runs one job per shard for all the surveys that share the shards (the interpreter and the imports
# once, not once per survey): rule preprocess for the sample's surveys, rule preprocess_manga for MaNGA's
PREPROCESS_SURVEYS = [s for s in SURVEYS if s not in MANGA.values()]
MANGA_PREPROCESS_SURVEYS = [s for s in SURVEYS if s in MANGA.values()]
# each survey's preprocessing settings (the shared ones with its own on top), by survey
PREPROCESS_PARAMS = {s: survey_params(config["preprocess"], s) for s in PREPROCESS_SURVEYS}
MANGA_PREPROCESS_PARAMS = {s: survey_params(config["preprocess"], s) for s in MANGA_PREPROCESS_SURVEYS}
# the stages the data allow (galmap.data.plan.stage_plan): a stage -> None, or why it is skipped
PLAN = stage_plan(config)
for _line in skipped_messages(config):
    logger.info(_line)
# what the data rules read of the config (so other settings do not rerun them)
DATA_PARAMS = {k: config[k] for k in ("seed", "shard_size", "data", "surveys")}
# the classification questions the labels can answer
CLASSIFY = dict(config["classify"], questions=usable_questions(config)[0])
# Conda environments (--use-conda / --sdm conda), one per group of rules; tests/workflow/test_envs.py checks that each
# holds what its rules import. They hold third-party packages only: galmap itself is found where snakemake
# runs it from (the Snakefile imports it; a script job adds snakemake's Python path after the env's own).
ENV_DATA = "../../envs/data.yaml"  # data, preprocessing, dvc
ENV_STRUCTURE = "../../envs/structure.yaml"  # Sérsic fits, morphometry
ENV_ML = "../../envs/ml.yaml"  # VAE, outliers, classification, flow, domain adaptation
ENV_FIGURES = "../../envs/figures.yaml"  # the paper's figures
LATENT_DIM = config["vae"]["latent_dim"]
LATENT_SIZES = sorted(set(config["vae"]["latent_scan"]) | {LATENT_DIM})
# What one VAE model depends on: its size comes from the {k} wildcard, so the scan list and the
# downstream latent size are left out (adding a size to the scan trains only that model).
# the mock population without its volunteers (who only make the labels: rule mock_labels) and without the
# features' visibility threshold (read by rule mock_catalog alone, for the truth's visible answers)
MOCK_POPULATION = {k: v for k, v in config.get("mock", {}).items() if k not in ("volunteers", "visibility")}
MOCK_LABEL_SURVEY = config.get("mock", {}).get("volunteers", {}).get("label_survey", "decals")
VAE_MODEL_PARAMS = {k: v for k, v in config["vae"].items() if k not in ("latent_dim", "latent_scan", "probes")}
# what the probes and the morphology metrics read (not the VAE's training): the splits, the survey, the probe settings
VAE_PROBE_PARAMS = {k: config["vae"][k] for k in ("survey", "val_fraction", "test_fraction", "sys_error", "device", "probes")}
# Rules that run PyTorch use a GPU when the node has one (device: auto); they ask the scheduler for one
# (resources: gpu) only where the config says cuda. The SLURM profile asks for one for the training rules.
GPU_TRAINING = config["vae"]["device"] == "cuda"
CNN_GPU = config["classify"]["cnn"]["device"] == "cuda"
FLOW_GPU = config["flow"]["device"] == "cuda"
DANN_GPU = config["domain"]["dann"]["device"] == "cuda"
DISTILL_GPU = config["domain"]["distill"]["device"] == "cuda"
SUPERRES_GPU = config["superres"]["device"] == "cuda"
HALPHA_GPU = config["halpha"]["device"] == "cuda"
VAE_SURVEY = config["vae"]["survey"]
# the source -> target pairs of the domain stage (survey A -> survey B) whose surveys the data have, by name
DOMAIN_PAIRS = {k: v for k, v in domain_pairs(config["domain"]).items() if domain_plan(config)[k] is None}
# the pair the domain figure shows (the first; a placeholder name when every pair is skipped: the rule is then not run)
DOMAIN_FIGURE_PAIR = next(iter(DOMAIN_PAIRS), "none")
# What each rule reads of a shared config section, so that a setting reruns only the rules that use it
# (tests/workflow/test_faults.py checks with `snakemake -n`): the Sérsic fits vs the morphometry band, the training
# vs the evaluation settings of the image-to-image networks, the classification targets vs each classifier.
SERSIC_PARAMS = {k: v for k, v in config["structure"].items() if k not in ("morph_band", "morphometry")}
MORPH_PARAMS = {k: config["structure"][k] for k in ("survey", "morph_band", "morphometry")}
SUPERRES_STRUCTURE_ONLY = ("structure_galaxies", "structure_draws", "calibration_galaxies")
SUPERRES_EVAL_ONLY = ("sample_steps", "n_draws", "eta", "fit_max_iter", "n_examples", "apply", *SUPERRES_STRUCTURE_ONLY)
SUPERRES_EVALUATE_PARAMS = {k: v for k, v in config["superres"].items() if k not in (*SUPERRES_STRUCTURE_ONLY, "apply")}
SUPERRES_STRUCTURE_PARAMS = {k: v for k, v in config["superres"].items() if k != "apply"}
# superres.apply: the user's FITS cutouts the trained models run on, by file name (results/superres/apply/<name>.*)
SUPERRES_APPLY = {os.path.splitext(os.path.basename(p))[0]: p for p in config["superres"]["apply"]["cutouts"]}
HALPHA_TRAIN_PARAMS = {
    k: v
    for k, v in config["halpha"].items()
    if k not in ("aperture_arcsec", "detect_snr", "n_examples", "diffusion")
}
# the U-Net's evaluation does not read the diffusion model's settings
HALPHA_EVAL_PARAMS = {k: v for k, v in config["halpha"].items() if k != "diffusion"}
# the Hα diffusion model's training settings (not its sampling, nor the U-Net's epochs, early stopping, augmentation)
HALPHA_DIFFUSION = config["halpha"]["diffusion"]
HALPHA_DIFFUSION_TRAIN_PARAMS = {
    k: v for k, v in HALPHA_TRAIN_PARAMS.items() if k not in ("epochs", "patience", "augment")
} | {
    "diffusion": {k: v for k, v in HALPHA_DIFFUSION.items() if k not in ("enabled", "sample_steps", "n_draws", "eta")}
}
# the unified latent space: its training settings (not the evaluation's), its surveys (encoded, then decode-only)
UNIFIED = config["unified"]
UNIFIED_SURVEYS = list(dict.fromkeys([*UNIFIED["surveys"], *UNIFIED["decode_only"]]))
UNIFIED_TRAIN = {k: v for k, v in UNIFIED.items() if k not in ("probe_trees", "n_examples", "goals", "retrieval_metric")}
UNIFIED_GPU = UNIFIED["device"] == "cuda"
# the outlier flags' settings, and the anomaly search's (galmap.anomalies): each rule reruns for its own keys only
OUTLIER_PARAMS = {k: config["outliers"][k] for k in ("threshold_sigma", "per_band")}
ANOMALY_PARAMS = {k: v for k, v in config["outliers"].items() if k not in OUTLIER_PARAMS}
CLASSIFY_TARGETS = {k: v for k, v in CLASSIFY.items() if k not in ("rf", "cnn")}
CLASSIFY_RF = {k: v for k, v in CLASSIFY.items() if k != "cnn"}
CLASSIFY_CNN = {k: v for k, v in CLASSIFY.items() if k != "rf"}
# the flow's training settings (the closure and gallery settings do not retrain it)
FLOW_TRAINING = {k: v for k, v in config["flow"].items() if not k.startswith(("closure_", "gallery_"))}
# the paper's figures of the stages that run on these data (the Sérsic-vs-truth figure needs the mock's truth)
FIGURE_STAGES = {
    "survey_examples": [],
    "sersic_residuals": ["structure"],
    "morphometry": ["structure"],
    "sersic_truth": ["structure", "truth"],
    "vae": ["vae"],
    "outliers": ["outliers"],
    "classify": ["classify"],
    "flow": ["flow"],
    "domain": ["domain"],
    "superres": ["superres"],
    "halpha": ["halpha"],
    "realism": ["realism"],
    "unified": ["unified"],
}
FIGURE_NAMES = [name for name, needs in FIGURE_STAGES.items() if not any(PLAN[s] for s in needs)]


wildcard_constraints:
    shard=r"\d{4}",
    survey="|".join(SURVEYS),
    k=r"\d+",
    model="diffusion|regression",
    pair="|".join(DOMAIN_PAIRS),


def every_survey_shard(pattern, surveys=None):
    """``pattern`` (with {survey} and {shard}) for every shard of each survey (its own shards for MaNGA)."""
    return [pattern.format(survey=s, shard=k) for s in surveys or SURVEYS for k in SURVEY_SHARDS[s]]


def superres_train_params(wildcards):
    """The superres settings one model's training reads: not the evaluation's, nor the other model's epochs."""
    other = {"diffusion": "regression", "regression": "diffusion"}[wildcards.model]
    return {k: v for k, v in config["superres"].items() if k not in (*SUPERRES_EVAL_ONLY, f"{other}_epochs")}


def halpha_train_params(wildcards):
    """The halpha settings one model's training reads: the U-Net's, or the diffusion model's."""
    return {"regression": HALPHA_TRAIN_PARAMS, "diffusion": HALPHA_DIFFUSION_TRAIN_PARAMS}[wildcards.model]


def data_failure_tables():
    """The data stage's per-shard failure tables (and the catalog's, for real data)."""
    if SOURCE == "mock":
        return expand("results/data/shards/failures-{shard}.csv", shard=SHARDS)
    shards = every_survey_shard("results/data/shards/failures-{survey}-{shard}.csv")
    return ["results/data/catalog_failures.csv", *shards]


def ingest_table(wildcards):
    """What the ingest of one shard reads: the local catalog, or the shard's download table."""
    if SOURCE == "local":
        return "results/catalog/catalog.parquet"
    if wildcards.survey in MANGA.values():
        return f"data/manga/{wildcards.survey}/downloads-{wildcards.shard}.csv"
    return f"data/legacysurvey/{wildcards.survey}/downloads-{wildcards.shard}.csv"


def raw_shard(wildcards):
    """The raw (un-preprocessed) shard of a survey."""
    return f"data/{SOURCE}/{wildcards.survey}/shard-{wildcards.shard}.h5"


def structure_images(wildcards):
    """The preprocessed shard the structure stage measures (survey from the config)."""
    return f"results/images/{config['structure']['survey']}/shard-{wildcards.shard}.h5"


def vae_images(wildcards):
    """Every preprocessed shard of the survey the VAE encodes."""
    return expand("results/images/{survey}/shard-{shard}.h5", survey=VAE_SURVEY, shard=SHARDS)


def _survey_shards(survey):
    return expand("results/images/{survey}/shard-{shard}.h5", survey=survey, shard=SURVEY_SHARDS.get(survey, SHARDS))


# the preprocessed shards the images-to-images stages pair by galaxy id
SUPERRES_SOURCE = _survey_shards(config["superres"]["source_survey"])
SUPERRES_TARGET = _survey_shards(config["superres"]["target_survey"])
# the Sérsic fits of the source survey (the structure stage's) that the networks' Sérsic base is drawn from
SUPERRES_SERSIC = ["results/structure/sersic.parquet"] if config["superres"]["sersic_base"] else []
# the mock's truth: the noiseless renderings and featureless galaxies of the structure comparison (none on real data)
SUPERRES_TRUTH = ["results/catalog/truth.parquet"] if SOURCE == "mock" else []
HALPHA_INPUT = _survey_shards(config["halpha"]["input_survey"])
HALPHA_TARGET = _survey_shards(config["halpha"]["target_survey"])


def domain_reference_model(wildcards):
    """The pair's target-supervised reference CNN when ``domain.reference`` asks for it, else nothing."""
    if config["domain"]["reference"]:
        return {"reference": f"results/domain/{wildcards.pair}/target_supervised/model.pt"}
    return {}


def domain_target_components(wildcards):
    """The preprocessed shards of the pair's target surveys (band order) for one shard."""
    surveys = target_surveys(DOMAIN_PAIRS[wildcards.pair])
    return [f"results/images/{survey}/shard-{wildcards.shard}.h5" for survey in surveys]


def domain_target_bands(wildcards):
    """Which target survey observes each source band, for the pair."""
    return dict(DOMAIN_PAIRS[wildcards.pair]["target_bands"])


def domain_target_survey_names(wildcards):
    """The pair's target surveys, in the order of :func:`domain_target_components`."""
    return target_surveys(DOMAIN_PAIRS[wildcards.pair])


def domain_pair_shards(wildcards):
    """Every target shard of the pair (on the source grid)."""
    return expand("results/domain/{pair}/target/shard-{shard}.h5", pair=wildcards.pair, shard=SHARDS)


def domain_dann_params(wildcards):
    """domain.dann with the pair's overrides."""
    return pair_settings(config["domain"], wildcards.pair, "dann")


def domain_distill_params(wildcards):
    """domain.distill with the pair's overrides."""
    return pair_settings(config["domain"], wildcards.pair, "distill")


def mock_truth(wildcards):
    """The mock's truth table (injected anomalies) when the data are the mock, else nothing."""
    return ["results/catalog/truth.parquet"] if SOURCE == "mock" else []


def anomaly_morphometry(wildcards):
    """statmorph's table (M20, asymmetry scores of the anomaly search) when the structure stage runs, else nothing."""
    return ["results/structure/morphometry.parquet"] if PLAN["structure"] is None else []


def outlier_labels(wildcards):
    """The expert's labels file (``outliers.labels``) when it exists, else nothing (no labels)."""
    path = config["outliers"]["labels"]
    return [path] if os.path.exists(path) else []


def all_outputs():
    """Every final output of the stages that run on these data."""
    runs = {stage for stage, why in PLAN.items() if why is None}
    out = [
        "results/catalog/labels.parquet",
        "results/catalog/catalog.parquet",
        "results/data/failures.csv",
        "results/preprocess/failures.csv",
        *every_survey_shard("results/images/{survey}/shard-{shard}.h5"),
        *expand("results/figures/{name}.{ext}", name=FIGURE_NAMES, ext=["pdf", "png"]),
    ]
    if SOURCE != "local":
        out.append("results/catalog/class_counts.csv")
    if "truth" in runs:
        out.append("results/catalog/truth.parquet")
    stage_outputs = {
        "structure": ["sersic.parquet", "morphometry.parquet", "failures.csv"],
        "outliers": ["outliers.parquet", "metrics.csv", "roc.csv", "ranking.parquet", "active.csv", "review.html"],
        "classify": ["metrics.csv", "confusion.csv", "comparison.csv", "failures.csv"],
        "flow": ["model.pt", "closure.csv", "closure_spearman.csv", "gallery.h5", "failures.csv"],
        "domain": ["metrics.csv", "summary.csv", "failures.csv"],
        "superres": ["metrics.csv", "re_compare.parquet", "failures.csv", "structure.csv", "calibration.csv"],
        "halpha": ["metrics.csv", "predictions.parquet", "failures.csv"],
        "realism": ["c2st.csv", "votes.csv", "stats.parquet", "failures.csv"],
        "unified": ["model.pt", "latents.parquet", "metrics.csv", "retrieval.csv", "translations.h5", "failures.csv"],
    }
    for stage, names in stage_outputs.items():
        if stage in runs:
            out += [f"results/{stage}/{name}" for name in names]
    if "halpha" in runs and HALPHA_DIFFUSION["enabled"]:
        out += [f"results/halpha/diffusion/{name}" for name in ("metrics.csv", "predictions.parquet", "failures.csv")]
    if "superres" in runs and SUPERRES_APPLY:
        out += expand("results/superres/apply/{name}.{ext}", name=list(SUPERRES_APPLY), ext=["csv", "png"])
    if "vae" in runs:
        out += expand("results/vae/z{k}/{name}", k=LATENT_SIZES, name=["model.pt", "latents.parquet", "history.csv"])
        out += ["results/vae/ssim_vs_latents.csv", "results/vae/failures.csv"]
        if "truth" in runs:
            out += ["results/vae/probes.csv"]
    return out


def superres_apply_cutout(wildcards):
    """The FITS cutout of ``superres.apply`` named ``wildcards.name``."""
    return SUPERRES_APPLY[wildcards.name]


def vae_noiseless(wildcards):
    """The noiseless test stamps (the mock draws them), else nothing: real data have no noiseless image."""
    return {"noiseless": "results/vae/noiseless/test.h5"} if SOURCE == "mock" else {}


def unified_images(wildcards):
    """Every preprocessed shard of each survey of the unified model, by survey name."""
    return {s: _survey_shards(s) for s in UNIFIED_SURVEYS}


def unified_references(wildcards):
    """The dedicated models' tables the unified translations are scored against, when their stages run."""
    refs = {}
    names = set(UNIFIED_SURVEYS)
    if PLAN["halpha"] is None and {config["halpha"]["input_survey"], config["halpha"]["target_survey"]} <= names:
        refs["halpha_metrics"] = "results/halpha/metrics.csv"
    if PLAN["superres"] is None and {config["superres"]["source_survey"], config["superres"]["target_survey"]} <= names:
        refs["superres_metrics"] = "results/superres/metrics.csv"
        refs["superres_re"] = "results/superres/re_compare.parquet"
    if SOURCE == "mock":
        refs["truth"] = "results/catalog/truth.parquet"
    return refs
