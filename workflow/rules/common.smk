# Shared names and input functions. No computation here: the library does that.
import math

SURVEYS = list(config["surveys"])
SOURCE = config["data"]["source"]
N_GALAXIES = config["mock"]["n_galaxies"]
SHARDS = [f"{i:04d}" for i in range(math.ceil(N_GALAXIES / config["shard_size"]))]
# Conda environments (--use-conda / --sdm conda), one per group of rules; tests/test_envs.py checks that each
# holds what its rules import. They hold third-party packages only: galmap itself is found where snakemake
# runs it from (the Snakefile imports it; a script job adds snakemake's Python path after the env's own).
ENV_DATA = "../../envs/data.yaml"  # data, preprocessing, dvc
ENV_STRUCTURE = "../../envs/structure.yaml"  # Sérsic fits, morphometry
ENV_ML = "../../envs/ml.yaml"  # VAE, outliers, classification, flow, domain adaptation
ENV_FIGURES = "../../envs/figures.yaml"  # the paper's figures
LATENT_DIM = config["vae"]["latent_dim"]
LATENT_SIZES = sorted(set(config["vae"]["latent_scan"]) | {LATENT_DIM})
# Rules that run PyTorch use a GPU when the node has one (device: auto); they ask the scheduler for one
# (resources: gpu) only where the config says cuda. The SLURM profile asks for one for the training rules.
GPU_TRAINING = config["vae"]["device"] == "cuda"
CNN_GPU = config["classify"]["cnn"]["device"] == "cuda"
FLOW_GPU = config["flow"]["device"] == "cuda"
DANN_GPU = config["domain"]["dann"]["device"] == "cuda"
VAE_SURVEY = config["vae"]["survey"]
# the surveys that observe the source's bands in the target (survey A -> survey B), in band order
DOMAIN_TARGETS = list(dict.fromkeys(config["domain"]["target_bands"].values()))
# the flow's training settings (the closure and gallery settings do not retrain it)
FLOW_TRAINING = {k: v for k, v in config["flow"].items() if not k.startswith(("closure_", "gallery_"))}
# the paper's figures of the stages that exist (the Sérsic-vs-truth figure needs the mock's truth)
FIGURE_NAMES = ["survey_examples", "sersic_residuals", "morphometry", "vae", "outliers", "classify", "flow", "domain"] + (
    ["sersic_truth"] if SOURCE == "mock" else []
)


wildcard_constraints:
    shard=r"\d{4}",
    survey="|".join(SURVEYS),
    k=r"\d+",


def raw_shard(wildcards):
    """The raw (un-preprocessed) shard of a survey."""
    return f"data/{SOURCE}/{wildcards.survey}/shard-{wildcards.shard}.h5"


def structure_images(wildcards):
    """The preprocessed shard the structure stage measures (survey from the config)."""
    return f"results/images/{config['structure']['survey']}/shard-{wildcards.shard}.h5"


def vae_images(wildcards):
    """Every preprocessed shard of the survey the VAE encodes."""
    return expand("results/images/{survey}/shard-{shard}.h5", survey=VAE_SURVEY, shard=SHARDS)


def domain_reference_model(wildcards):
    """The target-supervised reference CNN when ``domain.reference`` asks for it, else nothing."""
    if config["domain"]["reference"]:
        return {"reference": "results/domain/target_supervised/model.pt"}
    return {}


def mock_truth(wildcards):
    """The mock's truth table (injected anomalies) when the data are the mock, else nothing."""
    return ["results/catalog/truth.parquet"] if SOURCE == "mock" else []


def all_outputs():
    """Every final output of the stages that exist."""
    return [
        "results/catalog/truth.parquet",
        "results/catalog/labels.parquet",
        "results/catalog/catalog.parquet",
        "results/catalog/class_counts.csv",
        "results/data/failures.csv",
        "results/preprocess/failures.csv",
        "results/structure/sersic.parquet",
        "results/structure/morphometry.parquet",
        "results/structure/failures.csv",
        *expand("results/images/{survey}/shard-{shard}.h5", survey=SURVEYS, shard=SHARDS),
        *expand("results/vae/z{k}/{name}", k=LATENT_SIZES, name=["model.pt", "latents.parquet", "history.csv"]),
        "results/vae/ssim_vs_latents.csv",
        "results/vae/failures.csv",
        "results/outliers/outliers.parquet",
        "results/outliers/metrics.csv",
        "results/outliers/roc.csv",
        "results/classify/metrics.csv",
        "results/classify/confusion.csv",
        "results/classify/failures.csv",
        "results/flow/model.pt",
        "results/flow/closure.csv",
        "results/flow/closure_spearman.csv",
        "results/flow/gallery.h5",
        "results/flow/failures.csv",
        "results/domain/metrics.csv",
        "results/domain/failures.csv",
        *expand("results/figures/{name}.{ext}", name=FIGURE_NAMES, ext=["pdf", "png"]),
    ]
