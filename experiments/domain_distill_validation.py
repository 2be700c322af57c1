"""Choose the distillation settings (``domain.distill``) on a validation split, never the test split (issue 31).

A seeded 30 % of the galaxies outside every question's test split is held out of the distillation
(added to the ``exclude`` set, through the targets table's ``split``) and labelled with the
classification targets (the truth's votes): the **only target-survey labels read**, for model
selection (declared in docs/domain.md). Each variant is trained by the stage's own job function
(:func:`galmap.domain.jobs.domain_distill_file`) on the remaining 70 % of the overlap, and scored by
its target-image accuracy on the validation galaxies, paired against the source-only CNN on the same
galaxies (:func:`galmap.domain.adaptation.paired_change`). The winner is the variant with the highest
mean validation accuracy over the questions. No test-split galaxy is read.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 python experiments/domain_distill_validation.py \
        results --work runs/domain-val

(``results``: a default-sky run holding classify/, images/ and domain/<pair>/target/; ~1-2 min per variant on one core.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.classify.cnn import MorphologyCNN, predict
from galmap.classify.targets import class_names
from galmap.core.config import load_config
from galmap.core.io import read_table, write_table
from galmap.domain.adaptation import CNNEnsemble, held_out_galaxies, paired_change
from galmap.domain.jobs import domain_distill_file
from galmap.nn.training import load_model

REPO = Path(__file__).resolve().parents[1]
VAL_FRACTION = 0.3
#: the settings before this selection (4 students, 10 epochs, T = 2, feature term on); each variant changes one
CENTRE = {"members": 4, "epochs": 10, "temperature": 2.0, "feature_weight": 1.0}
#: (name, overrides of CENTRE)
VARIANTS = [
    ("default (4 students, 10 ep, T=2, features)", {}),
    ("1 student", {"members": 1}),
    ("20 epochs", {"epochs": 20}),
    ("T=1", {"temperature": 1.0}),
    ("T=4", {"temperature": 4.0}),
    ("no feature term", {"feature_weight": 0.0}),
]


def validation_galaxies(targets: pd.DataFrame, seed: int) -> set[str]:
    """A seeded ``VAL_FRACTION`` of the galaxies outside every question's test split."""
    test = held_out_galaxies(targets)
    free = np.array(sorted(set(targets["id"].astype(str)) - test))
    rng = np.random.default_rng([seed, 31])
    return set(rng.choice(free, size=int(round(VAL_FRACTION * len(free))), replace=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--pair", default="bass_mzls", help="the pair of domain.pairs (its results/domain/<pair>/target)")
    ap.add_argument("--test-once", action="store_true", help="then train the winner on every non-test galaxy and "
                    "score it once on the test split (for the report)")  # fmt: skip
    ap.add_argument("--test-once-only", action="store_true", help="no selection: the winner of the table already "
                    "in --work (distill_validation.csv), trained and scored once as --test-once")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    seed, base = int(cfg["seed"]), cfg["domain"]["distill"] | CENTRE | {"device": "cpu"}
    res, work = args.results, args.work
    work.mkdir(parents=True, exist_ok=True)
    targets = read_table(res / "classify/targets.parquet")
    questions = list(class_names(read_table(res / "classify/classes.csv")))
    val = validation_galaxies(targets, seed)
    # the distillation leaves out the test split and the validation galaxies
    masked = targets.assign(split=np.where(targets["id"].astype(str).isin(val), "test", targets["split"]))
    write_table(work / "targets-masked.parquet", masked)
    # the validation galaxies' labels, every question they answer, marked "test" so the predictions carry them
    val_targets = targets[targets["id"].astype(str).isin(val)].assign(split="test")
    assert not (set(val_targets["id"]) & held_out_galaxies(targets)), "a test-split galaxy in the validation set"
    classifier = str(res / "classify/cnn_image/model.pt")
    sources = sorted(str(p) for p in (res / "images" / cfg["vae"]["survey"]).glob("shard-*.h5"))
    target_paths = sorted(str(p) for p in (res / "domain" / args.pair / "target").glob("shard-*.h5"))
    if args.test_once_only:
        table = pd.read_csv(work / "distill_validation.csv")
        winner = table.loc[table["val_accuracy_mean"].idxmax(), "variant"]
        print("winner (highest mean validation accuracy):", winner)
        test_once(base | dict(VARIANTS)[winner], seed, res, work, targets, questions, classifier, sources, target_paths)
        return
    base_pred = predict(load_model(classifier, MorphologyCNN)[0], target_paths, val_targets, questions, 256)
    rows = []
    for name, over in VARIANTS:
        folder = work / name.split(" (")[0].replace(" ", "_").replace("=", "")
        folder.mkdir(exist_ok=True)
        t0 = time.process_time()
        domain_distill_file(
            base | over, seed, str(work / "targets-masked.parquet"), classifier, sources, target_paths,
            str(folder / "model.pt"), str(folder / "history.csv"),
        )  # fmt: skip
        cpu = time.process_time() - t0
        pred = predict(load_model(folder / "model.pt", CNNEnsemble)[0], target_paths, val_targets, questions, 256)
        per_q = [paired_change(base_pred[base_pred["question"] == q], pred[pred["question"] == q]) for q in questions]
        acc = (pred["pred_class"] == pred["true_class"]).groupby(pred["question"]).mean()
        change, se, n = paired_change(base_pred, pred)
        rows.append({
            "variant": name, **{k: (base | over)[k] for k in ("members", "epochs", "temperature", "feature_weight")},
            "val_accuracy_mean": float(acc.mean()),
            "change_mean_over_questions": float(np.mean([c for c, _, _ in per_q])),
            "change_pooled": change, "change_pooled_se": se, "n_pairs": n, "cpu_s": round(cpu, 1),
        })  # fmt: skip
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
    src_acc = (base_pred["pred_class"] == base_pred["true_class"]).groupby(base_pred["question"]).mean().mean()
    table = pd.DataFrame(rows)
    table.to_csv(work / "distill_validation.csv", index=False)
    print(f"\nvalidation: {len(val)} galaxies ({len(val_targets)} galaxy-question pairs) outside every test split;"
          f" source-only mean accuracy on their target images {src_acc:.4f}")  # fmt: skip
    print(table.to_string(index=False))
    winner = table.loc[table["val_accuracy_mean"].idxmax()]
    print("winner (highest mean validation accuracy):", winner["variant"])
    if args.test_once:
        over = dict(VARIANTS)[winner["variant"]]
        test_once(base | over, seed, res, work, targets, questions, classifier, sources, target_paths)


def test_once(params, seed, res, work, targets, questions, classifier, sources, target_paths) -> None:
    """The winner trained as the pipeline trains it (every galaxy outside the test split) and scored once on the
    test split's target images, paired against the source-only CNN (the report's number, not a selection)."""
    folder = work / "winner_full"
    folder.mkdir(exist_ok=True)
    domain_distill_file(params, seed, str(res / "classify/targets.parquet"), classifier, sources, target_paths,
                        str(folder / "model.pt"), str(folder / "history.csv"))  # fmt: skip
    test_targets = targets[targets["split"] == "test"]
    base = predict(load_model(classifier, MorphologyCNN)[0], target_paths, test_targets, questions, 256)
    pred = predict(load_model(folder / "model.pt", CNNEnsemble)[0], target_paths, test_targets, questions, 256)
    per_q = pd.DataFrame(
        [(q, *paired_change(base[base["question"] == q], pred[pred["question"] == q])) for q in questions],
        columns=["question", "change", "change_se", "n_test"],
    )
    per_q.to_csv(work / "winner_test.csv", index=False)
    print(per_q.to_string(index=False))
    mean = per_q["change"].mean()
    print(f"test split, target images: distillation minus source-only, mean of the questions {mean:+.4f}"
          f" (standard error of the mean {np.sqrt((per_q['change_se'] ** 2).sum()) / len(per_q):.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
