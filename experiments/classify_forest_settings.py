"""Classification settings chosen on the VALIDATION split (docs/classify.md): the forest and the decision rule.

On a finished run, for each question: forests on the latents
(``results/vae/z{K}/latents.parquet``) with candidate settings (``min_samples_leaf``,
``class_weight``) trained on the classification stage's training galaxies, and the run's
trained CNN (``results/classify/cnn_image/model.pt``, not retrained), each answering with
either decision rule of ``classify.decision`` (:data:`galmap.classify.targets.DECISIONS`),
scored on the validation galaxies (the split the CNN uses for early stopping; the test split
is not read). Prints balanced accuracy and accuracy per setting, as means over the questions.

    python experiments/classify_forest_settings.py RUN_DIR [--k 40] [--seed 42]
"""

from __future__ import annotations

import argparse
import glob
import itertools
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--k", type=int, default=40, help="latent size (the run's vae.latent_dim)")
    ap.add_argument("--seed", type=int, default=42, help="the run's seed")
    args = ap.parse_args()
    import torch

    from galmap.classify.cnn import MorphologyCNN, predict
    from galmap.classify.targets import DECISIONS, class_names, classification_forest, decide, latent_matrix
    from galmap.core.stats import balanced_accuracy
    from galmap.nn.training import load_model

    torch.set_num_threads(1)
    res = args.run / "results"
    targets = pd.read_parquet(res / "classify" / "targets.parquet")
    ids, z = latent_matrix(pd.read_parquet(res / "vae" / f"z{args.k}" / "latents.parquet"))
    row = {g: i for i, g in enumerate(ids)}
    rows = []

    def score(model: str, setting: dict, q: str, true: np.ndarray, pred: np.ndarray) -> None:
        rows.append(
            {"model": model}
            | setting
            | {"question": q, "balanced_accuracy": balanced_accuracy(true, pred), "accuracy": np.mean(true == pred)}
        )

    grid = {"min_samples_leaf": [1, 3, 10], "class_weight": ["none", "balanced"]}
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values, strict=True))
        for q, grp in targets.groupby("question", sort=False):
            idx = np.array([row.get(g, -1) for g in grp["id"]])
            grp, idx = grp[idx >= 0], idx[idx >= 0]
            train, val = (grp["split"] == "train").to_numpy(), (grp["split"] == "val").to_numpy()
            y = grp["class"].to_numpy()
            weight = None if setting["class_weight"] == "none" else setting["class_weight"]
            forest = {"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": setting["min_samples_leaf"]}
            rf = classification_forest(forest | {"class_weight": weight}, args.seed)
            rf.fit(z[idx[train]], y[train])
            proba = rf.predict_proba(z[idx[val]])
            prior = np.array([np.mean(y[train] == c) for c in rf.classes_])
            for rule in DECISIONS:
                score("rf_latent", setting | {"decision": rule}, q, y[val], rf.classes_[decide(proba, prior, rule)])
    model, _ = load_model(res / "classify" / "cnn_image" / "model.pt", MorphologyCNN)
    model.eval()
    questions = list(class_names(pd.read_csv(res / "classify" / "classes.csv")))
    paths = sorted(glob.glob(str(res / "images" / "decals" / "shard-*.h5")))
    for rule in DECISIONS:
        pred = predict(model, paths, targets, questions, decision=rule)
        for q, p in pred[pred["split"] == "val"].groupby("question", sort=False):
            score("cnn_image", {"decision": rule}, q, p["true_class"].to_numpy(), p["pred_class"].to_numpy())
    table = pd.DataFrame(rows).fillna({"min_samples_leaf": -1, "class_weight": "-"})
    keys = ["model", "decision", "min_samples_leaf", "class_weight"]
    summary = table.groupby(keys, sort=False)[["balanced_accuracy", "accuracy"]].mean()
    pd.set_option("display.width", 220)
    print(table.pivot_table(index=keys, columns="question", values="balanced_accuracy", sort=False).round(3))
    print("\nmean over the questions (validation split):")
    print(summary.round(4).sort_values(["balanced_accuracy"], ascending=False).to_string())


if __name__ == "__main__":
    main()
