"""Choose the Hα U-Net's training length and augmentation on the validation split, never the test split (issue 31).

One training per epoch count, by the stage's job function (:func:`galmap.images2images.jobs.halpha_train_file`,
``patience`` = ``epochs`` as in the config; the weights of the best validation-loss epoch are kept), each
scored by the stage's own evaluation (:func:`galmap.images2images.halpha.evaluate`) on the **validation**
galaxies of ``galmap.nn.inputs.assign_split`` (the test galaxies are not read): the robust scatter of
log10(predicted / true Hα flux) and the median pixel correlation. The winner is the count with the
smallest validation flux scatter (all galaxies). ``--augment true false`` trains each count with and without
``halpha.augment`` (default: the config's only) and the same rule chooses among all pairs; the training's own
validation loss (the best epoch's, of ``history*.csv``) is reported with them. ``--reuse-default``: the
config's setting is not retrained but taken from the default run's ``results/halpha/regression/model.pt``
(the same settings and seed).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 python experiments/halpha_epochs_validation.py \
        results --work runs/halpha-val [--epochs 16 24 32 48 64] [--augment true false] [--reuse-default]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import read_table
from galmap.images2images.halpha import evaluate, load_pairs
from galmap.images2images.jobs import halpha_train_file
from galmap.nn.training import load_model
from galmap.nn.unet import UNet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_split import score_on_validation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, nargs="+", default=[16, 24, 32, 48, 64])
    ap.add_argument("--augment", nargs="+", choices=["true", "false"], default=None)
    ap.add_argument("--reuse-default", action="store_true")
    ap.add_argument("--out", default="halpha_epochs_validation.csv", help="the table's name under --work")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--score-test", type=int, metavar="EPOCHS", help="no selection: the model of this many epochs "
                    "already trained in --work (the pipeline's model for that setting), scored once on the test split "
                    "(for the report)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    seed, base = int(cfg["seed"]), cfg["halpha"] | {"device": "cpu"}
    inputs = sorted(str(p) for p in (args.results / "images" / base["input_survey"]).glob("shard-*.h5"))
    targets = sorted(str(p) for p in (args.results / "images" / base["target_survey"]).glob("shard-*.h5"))
    truth = read_table(args.results / "catalog/truth.parquet")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.score_test:
        params = base | {"epochs": args.score_test, "patience": args.score_test}
        model, meta = load_model(args.work / f"epochs{args.score_test}.pt", UNet)
        data = load_pairs(inputs, targets, params, seed, FailureLog("halpha"))
        metrics, _, _ = evaluate(data, model, params, truth, FailureLog("halpha"), float(meta["train_images_per_s"]))
        print(f"test split, {args.score_test} epochs:\n{metrics.to_string(index=False)}")
        return
    data = score_on_validation(load_pairs(inputs, targets, base, seed, FailureLog("halpha")))
    rows = []
    augments = [a == "true" for a in args.augment] if args.augment else [bool(base["augment"])]
    default = (int(base["epochs"]), bool(base["augment"]))
    for augment, epochs in [(a, e) for a in augments for e in args.epochs]:
        params = base | {"epochs": epochs, "patience": epochs, "augment": augment}
        tag = f"{epochs}" if args.augment is None else f"{epochs}-augment{int(augment)}"
        model_path, history = args.work / f"epochs{tag}.pt", args.work / f"history{tag}.csv"
        if args.reuse_default and (epochs, augment) == default and int(base["patience"]) == epochs:
            model_path, history = args.results / "halpha/regression/model.pt", None
            cpu = float("nan")
        else:
            t0 = time.process_time()
            halpha_train_file(params, seed, inputs, targets, str(model_path), str(history))
            cpu = time.process_time() - t0
        model, meta = load_model(model_path, UNet)
        metrics, _, _ = evaluate(data, model, params, truth, FailureLog("halpha"), float(meta["train_images_per_s"]))
        m = metrics.set_index("subset")
        rows.append({
            "epochs": epochs, "augment": augment, "n_val": int(m.loc["all", "n_galaxies"]),
            "val_flux_scatter_dex": m.loc["all", "flux_log_scatter_dex"],
            "val_flux_offset_dex": m.loc["all", "flux_log_ratio_median_dex"],
            "val_pixel_corr_detectable": m.loc["detectable", "pixel_corr_median"],
            "val_flux_scatter_detectable_dex": m.loc["detectable", "flux_log_scatter_dex"],
            "train_cpu_s": round(cpu, 1),
        })  # fmt: skip
        hist = read_table(history if history else args.results / "halpha/regression/history.csv")
        rows[-1]["val_loss_best"] = float(hist["val_loss"].min()) if "val_loss" in hist else float("nan")
        print(pd.DataFrame(rows).tail(1).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.work / args.out, index=False)
    print(table.to_string(index=False))
    best = table.loc[table["val_flux_scatter_dex"].idxmin()]
    print(f"winner (smallest validation flux scatter): {int(best['epochs'])} epochs, augment {bool(best['augment'])}")


if __name__ == "__main__":
    main()
