"""Issue 33: train the unified model with config overrides and score it on the VALIDATION split of the default sky.

Usage (one variant per call; a row is appended to ``<out>/validation.csv``)::

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python experiments/unified_validation.py \\
        --name base --set max_epochs=12 --run results --out runs/unified-validation

``--set key=value`` overrides a key of the ``unified`` section of ``config/config.yaml`` (values
parsed as YAML). The run directory holds ``images/<survey>/shard-*.h5`` and
``classify/targets.parquet`` of the default sky (seed 42). The test splits are never read:
retrieval (top-1, every survey pair), the survey-invariance probe and the transfer of the
DECaLS-trained forest are measured on the unified model's val split (retrieval, invariance)
and on the classification stage's val split (the forest, trained on its train split).
Retrieval is measured with every latent distance (:data:`galmap.unified.evaluate.RETRIEVAL_METRICS`; per pair
in ``<out>/validation_pairs.csv``). Reports the CPU-s of the training and of the scoring (process time, one
thread). The model is written as ``<out>/model-<name>.pt`` in the format of the rule ``unified_train`` (same
config, seed and data: the same model).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from galmap.classify.targets import class_names, score_predictions
from galmap.core.io import read_table
from galmap.nn.training import save_model
from galmap.unified import evaluate as ev
from galmap.unified.jobs import _stack
from galmap.unified.train import train_unified

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--set", action="append", default=[], help="unified.KEY=VALUE (YAML value)")
    ap.add_argument("--run", default="results", help="run directory with images/ and classify/")
    ap.add_argument("--out", default="runs/unified-validation")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    params = dict(config["unified"])
    for item in args.set:
        key, value = item.split("=", 1)
        params[key] = yaml.safe_load(value)
    seed = int(config["seed"])
    run = Path(args.run)
    surveys = list(dict.fromkeys([*params["surveys"], *params["decode_only"]]))
    paths = {s: sorted(str(p) for p in (run / "images" / s).glob("shard-*.h5")) for s in surveys}
    torch.set_num_threads(1)
    t0 = time.process_time()
    stack = _stack(paths, params, seed)
    t_load = time.process_time() - t0
    t0 = time.process_time()
    model, history, meta = train_unified(stack, params, seed, progress=False)
    cpu = time.process_time() - t0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    save_model(Path(args.out) / f"model-{args.name}.pt", model, meta)  # the file of the rule unified_train
    post = ev.posteriors(model, stack)
    singles = list(model.encoders)
    t0 = time.process_time()
    rets = {m: ev.retrieval_table(stack, post, singles, split="val", metric=m) for m in ev.RETRIEVAL_METRICS}
    ret = rets[str(params.get("retrieval_metric", "cosine"))]
    inv = ev.invariance_table(stack, post, singles, seed, split="val", n_estimators=int(params["probe_trees"]))
    targets = read_table(run / "classify" / "targets.parquet")
    val = targets[targets["split"] != "test"].copy()
    val["split"] = val["split"].replace({"val": "test"})  # score on the val split, never on the test split
    preds, _ = ev.classification_predictions(
        val, post, stack.ids, config["classify"]["rf"], seed, config["classify"]["decision"]
    )
    names = class_names(read_table(run / "classify" / "classes.csv"))
    cls, _ = score_predictions(preds, val, names)
    ba = cls.groupby("model")["balanced_accuracy"].mean()
    uni = ret[ret["method"] == "unified"]
    base = ret[ret["method"] == "measured"]
    row = {
        "name": args.name,
        "overrides": json.dumps(dict(s.split("=", 1) for s in args.set)),
        "cpu_s_train": round(cpu, 1),
        "cpu_s_load": round(t_load, 1),
        "epochs": len(history),
        "best_epoch": int(history.loc[history["best"], "epoch"].iloc[0]),
        "val_loss": float(history["val_loss"].min()),
        "top1_min": float(uni["top1"].min()),
        "top1_mean": float(uni["top1"].mean()),
        "baseline_top1_mean": float(base["top1"].mean()),
        "baseline_top1_min": float(base["top1"].min()),
        **{
            f"top1_{m}_{f}": float(getattr(r.loc[r["method"] == "unified", "top1"], f)())
            for m, r in rets.items()
            for f in ("min", "mean")
        },  # fmt: skip
        **{f"inv_{r['latent']}": float(r["above_chance"]) for _, r in inv.iterrows()},
        **{f"ba_{k}": float(v) for k, v in ba.items()},
    }
    row["cpu_s_evaluate"] = round(time.process_time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = pd.concat([r.assign(name=args.name) for r in rets.values()])
    pairs = pairs.drop_duplicates(["source", "target", "method", "metric"])
    per_pair = out / "validation_pairs.csv"
    pairs.to_csv(per_pair, mode="a", header=not per_pair.exists(), index=False)
    table = out / "validation.csv"
    pd.DataFrame([row]).to_csv(table, mode="a", header=not table.exists(), index=False)
    print(pd.Series(row).to_string())
    print(uni[["source", "target", "n_galaxies", "top1"]].assign(base=base["top1"].to_numpy()).to_string(index=False))
    print(history[["epoch", "seconds", "train_loss", "val_loss"]].to_string(index=False))


if __name__ == "__main__":
    main()
