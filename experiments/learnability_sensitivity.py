"""How sensitive is learnability to the volunteers' perception parameters? Relabel a run's sky and retrain.

Issue 27 asks how sensitive learnability is to the volunteers' parameters. The first question's errors were
measured with two full runs (docs/realism.md, "Volunteer errors on the first question"); this script varies the
perceptual model of the other features (``mock.visibility.snr_threshold`` S₀ and
``mock.volunteers.perception_scatter_dex``, docs/mock.md), one at a time, on a finished run of the default config:
for each setting it simulates the volunteers' labels of the run's truth (:func:`galmap.mock.volunteers.make_labels`,
the config's seed), makes the classification targets, trains the image CNN on the run's DECaLS shards and the
forest on the run's latents with the classification stage's own job functions and settings, and reports
``experiments/learnability.py``'s table: accuracy and balanced accuracy on confident test galaxies (majority
≥ 0.8), and how many of the nine questions reach the seed's forest. The config's own setting is retrained
in the same way first (the baseline of the same run: training differs from the pipeline's only in the
process it runs in). Images, truth and latents are the run's; nothing in the run is changed.

Cost: about 2 CPU-min per setting (the CNN); settings run two at a time.

Usage: ``PYTHONPATH=src python experiments/learnability_sensitivity.py <run> <work dir> [--processes 2]``;
writes ``<work dir>/<setting>/results/...`` and ``<work dir>/sensitivity.csv``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from learnability import confident_accuracy  # noqa: E402 - the sibling script

#: (name, S₀, scatter in dex); None: the config's value
SETTINGS = (
    ("config", None, None),
    ("s0_x0.5", 0.5, None),
    ("s0_x2", 2.0, None),
    ("scatter_0.1", None, 0.1),
    ("scatter_0.3", None, 0.3),
)


def _config() -> dict:
    """The default config with the schema's defaults filled in (as the pipeline sees it)."""
    from galmap.core.config import load_config

    repo = Path(__file__).parents[1]
    return load_config(repo / "config/config.yaml", repo / "workflow/schemas/config.schema.yaml")


def relabel_and_train(run: Path, work: Path, name: str, s0_factor: float | None, scatter: float | None) -> Path:
    """One setting: labels, targets, CNN and forest under ``work/name/results``; returns ``work/name``."""
    from galmap.classify.jobs import classify_cnn_file, classify_rf_file, classify_targets_file
    from galmap.core.io import read_table, write_table
    from galmap.core.surveys import Survey
    from galmap.mock.volunteers import make_labels

    config = _config()
    seed, vol, vis = int(config["seed"]), config["mock"]["volunteers"], config["mock"]["visibility"]
    survey = Survey.from_config(vol["label_survey"], config["surveys"][vol["label_survey"]])
    perception = {
        "snr_threshold": float(vis["snr_threshold"]) * (s0_factor or 1.0),
        "featured_snr_threshold": vis["featured_snr_threshold"],
        "scatter_dex": scatter if scatter is not None else vol["perception_scatter_dex"],
    }
    out = work / name / "results"
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    truth = read_table(str(run / "results/catalog/truth.parquet"))
    labels = make_labels(truth, survey, seed, vol["votes_mean"], perception, vol["first_question"])
    write_table(str(out / "catalog/labels.parquet"), labels)
    cls = config["classify"]

    def path(rel: str) -> str:
        return str(out / rel)

    (out / "classify/cnn_image").mkdir(parents=True, exist_ok=True)
    (out / "classify/rf_latent").mkdir(parents=True, exist_ok=True)
    targets, classes = path("classify/targets.parquet"), path("classify/classes.csv")
    no_models = {k: v for k, v in cls.items() if k not in ("rf", "cnn")}
    classify_targets_file(no_models, seed, path("catalog/labels.parquet"), targets, classes)
    latents = str(run / f"results/vae/z{int(config['vae']['latent_dim'])}/latents.parquet")
    rf = {k: v for k, v in cls.items() if k != "cnn"}
    rf_out = [path("classify/rf_latent/predictions.parquet"), path("classify/rf_latent/failures.csv")]
    classify_rf_file(rf, seed, targets, latents, *rf_out)
    images = sorted(str(p) for p in (run / "results/images" / config["vae"]["survey"]).glob("shard-*.h5"))
    cnn = {k: v for k, v in cls.items() if k != "rf"}
    files = ("model.pt", "history.csv", "predictions.parquet", "failures.csv")
    cnn_out = [path(f"classify/cnn_image/{f}") for f in files]
    classify_cnn_file(cnn, seed, targets, classes, images, *cnn_out)
    return work / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run of the default config (results/ inside)")
    parser.add_argument("work", type=Path, help="where the relabelled settings are written")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--min-majority", type=float, default=0.8)
    args = parser.parse_args()
    with ProcessPoolExecutor(args.processes) as pool:
        jobs = {name: pool.submit(relabel_and_train, args.run, args.work, name, f, s) for name, f, s in SETTINGS}
        dirs = {name: job.result() for name, job in jobs.items()}
    tables = [confident_accuracy(args.run, args.min_majority).assign(setting="the run itself")]
    tables += [confident_accuracy(d, args.min_majority).assign(setting=name) for name, d in dirs.items()]
    table = pd.concat(tables)
    table.to_csv(args.work / "sensitivity.csv", index=False)
    summary = table.groupby(["setting", "model"], sort=False).agg(
        reaches_seed=("reaches_seed", "sum"),
        mean_accuracy=("accuracy", "mean"),
        mean_balanced_accuracy=("balanced_accuracy", "mean"),
        n_test_confident=("n_test_confident", "sum"),
    )
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(table.pivot_table(index="question", columns=["model", "setting"], values="balanced_accuracy", sort=False))
        print(summary)


if __name__ == "__main__":
    main()
