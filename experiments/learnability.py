"""Are the mock's labels learnable as real ones are? Issue 27's learnability targets, from a run's outputs.

Reads a finished run (default config) and prints two tables:

1. **Accuracy on confident galaxies.** For each of the nine questions, the test galaxies whose winning class
   has a vote fraction of at least ``--min-majority`` (0.8, the issue's "majority ≥ 0.8") among the galaxies
   the classify stage scored (``results/classify/targets.parquet``, test split): the CNN's and the latent
   forest's accuracy and balanced accuracy, the majority-class share (chance for plain accuracy), and the
   seed's random-forest test accuracy beside them. The issue's target: the CNN reaches the seed's accuracy
   on at least 7 of the 9 questions; balanced accuracy is shown so that a shift of the classes towards
   "not seen" cannot pass for learnability.
2. **Unseen features.** For the perceptual questions (the volunteers' model, :mod:`galmap.mock.volunteers`),
   the galaxies that physically have the feature (``true_<question>``) but whose image does not show it
   (``visible_<question>`` is the "not seen" answer, :func:`galmap.mock.visibility.visible_answers`) and
   that have at least ``classify.min_votes`` votes on the question: the share whose majority answer is the
   "not seen" one. Target: ≥ 80 %.

    PYTHONPATH=src python experiments/learnability.py <run> [--second <run>] [--out table.csv]

Nothing is fitted here; the numbers are read off the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from galmap.core.galaxyzoo import QUESTION_BY_NAME
from galmap.core.stats import balanced_accuracy

#: The seed talk's random-forest test accuracy per question (issue 27), percent.
SEED_ACCURACY = {
    "how-rounded": 90.68,
    "disk-edge-on": 84.25,
    "edge-on-bulge": 84.08,
    "bar": 76.21,
    "has-spiral-arms": 91.91,
    "spiral-winding": 75.84,
    "spiral-arm-count": 86.32,
    "bulge-size": 82.60,
    "merging": 96.36,
}

#: Perceptual questions and the answer of a volunteer who does not see the feature.
NOT_SEEN = {"smooth-or-featured": "smooth", "bar": "no", "has-spiral-arms": "no", "merging": "none"}

MODELS = ("cnn_image", "rf_latent")


def confident_accuracy(run: Path, min_majority: float) -> pd.DataFrame:
    """Per question and model: accuracy and balanced accuracy on confident test galaxies (fractions)."""
    targets = pd.read_parquet(run / "results/classify/targets.parquet")
    test = targets[(targets["split"] == "test") & (targets["majority"] >= min_majority)]
    rows = []
    for model in MODELS:
        pred = pd.read_parquet(run / f"results/classify/{model}/predictions.parquet")
        pred = pred[pred["split"] == "test"].merge(test[["id", "question"]], on=["id", "question"])
        for question, seed_acc in SEED_ACCURACY.items():
            p = pred[pred["question"] == question]
            true, guess = p["true_class"].to_numpy(), p["pred_class"].to_numpy()
            share = np.bincount(true).max() / len(true) if len(true) else np.nan
            rows.append(
                {
                    "question": question,
                    "model": model,
                    "n_test_confident": len(p),
                    "accuracy": float(np.mean(true == guess)) if len(p) else np.nan,
                    "balanced_accuracy": balanced_accuracy(true, guess),
                    "majority_class_share": share,
                    "seed_accuracy": seed_acc / 100,
                }
            )
    out = pd.DataFrame(rows)
    out["reaches_seed"] = out["accuracy"] >= out["seed_accuracy"]
    return out


def unseen_answers(run: Path, min_votes: float) -> pd.DataFrame:
    """Per perceptual question: galaxies with the feature below visibility, and the share answered "not seen"."""
    truth = pd.read_parquet(run / "results/catalog/truth.parquet")
    labels = pd.read_parquet(run / "results/catalog/labels.parquet")
    data = truth.merge(labels, on="id", suffixes=("", "_label"))
    rows = []
    for question, hidden in NOT_SEEN.items():
        if f"visible_{question}" not in data:  # a run older than the question's perception model
            print(f"{run}: no visible_{question} in the truth; skipped")
            continue
        answers = QUESTION_BY_NAME[question].answers
        fractions = data[[f"{question}_{a}_fraction" for a in answers]].to_numpy(float)
        votes = data[f"{question}_total-votes"].to_numpy(float)
        true = data[f"true_{question}"].to_numpy(dtype=object)
        visible = data[f"visible_{question}"].to_numpy(dtype=object)
        unseen = (true != "") & (true != hidden) & (visible == hidden) & (votes >= max(min_votes, 1))
        winner = np.asarray(answers, dtype=object)[np.argmax(np.nan_to_num(fractions, nan=-1.0), axis=1)]
        n = int(unseen.sum())
        rows.append(
            {
                "question": question,
                "not_seen_answer": hidden,
                "n_unseen": n,
                "share_answered_not_seen": float(np.mean(winner[unseen] == hidden)) if n else np.nan,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run's directory (results/ inside)")
    parser.add_argument("--second", type=Path, help="a second run (the second sky), shown beside the first")
    parser.add_argument("--min-majority", type=float, default=0.8)
    parser.add_argument("--min-votes", type=float, default=10.0, help="classify.min_votes of the run")
    parser.add_argument("--out", type=Path, help="write the confident-accuracy table here (CSV)")
    args = parser.parse_args()
    runs = {"run": args.run} | ({"second": args.second} if args.second else {})
    tables, unseen = [], []
    for name, run in runs.items():
        tables.append(confident_accuracy(run, args.min_majority).assign(sky=name))
        unseen.append(unseen_answers(run, args.min_votes).assign(sky=name))
    table, unseen_table = pd.concat(tables), pd.concat(unseen)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table.to_string(index=False))
        for (sky, model), t in table.groupby(["sky", "model"]):
            print(
                f"{sky} {model}: reaches the seed's accuracy on {int(t['reaches_seed'].sum())} of {len(t)} questions;"
                f" mean balanced accuracy {t['balanced_accuracy'].mean():.3f}"
            )
        print()
        print(unseen_table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
