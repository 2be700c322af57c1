"""Choose the super-resolution loss weights (``loss_weight_power``, ``sys_error``) on the validation split (issue 31).

For each power (0: unweighted, 0.5, 1: the chi^2) and each ``sys_error`` (``--sys-errors``; default: as
configured) the diffusion model and the
regression U-Net are trained by the stage's job function (:func:`galmap.images2images.jobs.superres_train_file`,
the config's epochs) and scored by the stage's own evaluation (:func:`galmap.images2images.superres.evaluate`)
on the **validation** galaxies of ``galmap.nn.inputs.assign_split`` (the test galaxies are not read; a
validation galaxy without a Sérsic base is left out, as in training). The default config's power can reuse
the default run's models (``--reuse-default``: ``results/superres/{diffusion,regression}/model.pt``, trained
with the same settings and seed). The winner per network is the power with the smallest validation
Re scatter against the Euclid image's own Re (``re_log_scatter_dex``); the bias and PSNR are reported with it.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 python experiments/superres_weights_validation.py \
        results --work runs/superres-val --reuse-default [--powers 0 0.5 1] [--sys-errors 0.02 0.05 0.1]
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
from galmap.images2images.jobs import superres_train_file
from galmap.images2images.superres import evaluate, load_pairs
from galmap.nn.training import derived_seed, load_model
from galmap.nn.unet import UNet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_split import score_on_validation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEYS = ("data_scale", "residual_scale", "base_band_weights")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--powers", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    ap.add_argument("--sys-errors", type=float, nargs="+", default=None,
                    help="fractional systematic errors of the loss weights (default: the config's)")  # fmt: skip
    ap.add_argument("--out", default="superres_weights_validation.csv", help="the table's name under --work")
    ap.add_argument("--reuse-default", action="store_true")
    ap.add_argument("--kinds", nargs="+", default=["diffusion", "regression"], help="the networks trained per power; "
                    "the other is the default run's (its metrics then say nothing of the power)")  # fmt: skip
    ap.add_argument(
        "--max-val",
        type=int,
        default=None,
        help="score only this many validation galaxies (a seeded "
        "subset, the same for every power): the Sérsic fits of the evaluation dominate its cost",
    )
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    seed, base = int(cfg["seed"]), cfg["superres"] | {"device": "cpu"}
    res = args.results
    source = sorted(str(p) for p in (res / "images" / base["source_survey"]).glob("shard-*.h5"))
    target = sorted(str(p) for p in (res / "images" / base["target_survey"]).glob("shard-*.h5"))
    sersic_path = str(res / "structure/sersic.parquet") if base["sersic_base"] else None
    sersic = read_table(sersic_path) if sersic_path else None
    args.work.mkdir(parents=True, exist_ok=True)
    parts = []
    sys_errors = args.sys_errors or [float(base["sys_error"])]
    default = (float(base["loss_weight_power"]), float(base["sys_error"]))
    for sys_error, power in [(e, p) for e in sys_errors for p in args.powers]:
        params = base | {"loss_weight_power": power, "sys_error": sys_error}
        folder = args.work / (f"power{power:g}" if args.sys_errors is None else f"power{power:g}-sys{sys_error:g}")
        folder.mkdir(exist_ok=True)
        paths, cpu = {}, {}
        for kind in ("diffusion", "regression"):
            if kind not in args.kinds or (args.reuse_default and (power, sys_error) == default):
                paths[kind], cpu[kind] = res / f"superres/{kind}/model.pt", float("nan")
                continue
            paths[kind] = folder / f"{kind}.pt"
            t0 = time.process_time()
            superres_train_file(kind, params, seed, source, target, str(paths[kind]), str(folder / f"{kind}.csv"),
                                sersic_path)  # fmt: skip
            cpu[kind] = time.process_time() - t0
        diffusion, dmeta = load_model(paths["diffusion"], UNet)
        regression, rmeta = load_model(paths["regression"], UNet)
        data = load_pairs(source, target, params, seed, FailureLog("superres"), sersic, {k: dmeta.get(k) for k in KEYS})
        rates = {"diffusion": dmeta["train_images_per_s"], "regression": rmeta["train_images_per_s"]}
        scored = score_on_validation(data, args.max_val, seed)
        metrics, _, _ = evaluate(scored, diffusion, regression, params, derived_seed(seed, 70, 3),
                                 FailureLog("superres"), rates)  # fmt: skip
        m = metrics[metrics["method"].isin(["diffusion", "regression", "bicubic", "sersic_base"])]
        m = m[["method", "n_galaxies", "re_log_scatter_dex", "re_log_ratio_median", "psnr_db", "ssim"]]
        m = m[m["method"].isin([*args.kinds, "bicubic", "sersic_base"])]
        m = m.assign(power=power, train_cpu_s=m["method"].map(cpu).round(1))
        if args.sys_errors is not None:
            m = m.assign(sys_error=sys_error)
        parts.append(m)
        print(m.to_string(index=False), flush=True)
    table = pd.concat(parts, ignore_index=True)
    table.to_csv(args.work / args.out, index=False)
    print(table.to_string(index=False))
    for kind in args.kinds:
        t = table[table["method"] == kind]
        best = t.loc[t["re_log_scatter_dex"].idxmin()]
        chosen = f"power {best['power']:g}" + (f", sys_error {best['sys_error']:g}" if "sys_error" in t else "")
        print(f"winner for {kind} (smallest validation Re scatter): {chosen}")


if __name__ == "__main__":
    main()
