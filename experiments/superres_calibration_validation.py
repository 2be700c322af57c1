"""Choose the diffusion model's training and sampling settings (epochs, EMA, steps, eta) on validation (issue 29).

Each variant is scored by the stage's own structure job
(:func:`galmap.images2images.jobs.superres_structure_file`, ``split="val"``: a fixed seeded subset of
``superres.structure_galaxies`` validation galaxies, ``structure_draws`` draws each, the spread scale
fitted on ``calibration_galaxies`` *other* validation galaxies; no test galaxy is read). A variant with
``ema:DECAY`` or ``epochs:N`` trains the diffusion model again (:func:`galmap.images2images.jobs.superres_train_file`,
the config's seed) with ``superres.ema_decay`` or ``superres.diffusion_epochs``; settings combine with ``+``
(``epochs:12+ema:0.999``). The others reuse the run's models
(``RESULTS/superres/{diffusion,regression}/model.pt``). Writes ``WORK/<tag>/{structure,calibration}.csv``
and prints the headline per variant: the Re scatter and bias of the draws, the Re and pixel coverage
against the noiseless Euclid rendering, the invented-arms fraction, the scatter of the draws' mean against
Euclid for concentration, asymmetry, Gini and M20, and the featureless galaxies' asymmetry bias.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python experiments/superres_calibration_validation.py \
        results --work runs/superres-cal --variant base --variant ema:0.99 --variant eta:1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from galmap.core.config import load_config
from galmap.images2images.jobs import superres_structure_file, superres_train_file

REPO = Path(__file__).resolve().parents[1]
# the non-parametric quantities of the issue's structure target (the draws' mean and DECaLS against Euclid)
STRUCTURE = ("concentration", "asymmetry", "gini", "m20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="base | ema:DECAY | epochs:N | eta:ETA | steps:N, combined with + (repeatable)",
    )
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    ap.add_argument("--seed", type=int, default=None, help="the sky's seed (default: the config's)")
    ap.add_argument("--split", default="val", help="the galaxies measured: val (choosing), test (the report only)")
    ap.add_argument("--set", nargs="*", default=[], help="superres.KEY=VALUE overrides (e.g. structure_galaxies=10)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    seed = int(cfg["seed"]) if args.seed is None else args.seed
    base = cfg["superres"] | {"device": "cpu"}
    for kv in args.set:
        key, _, value = kv.partition("=")
        base[key] = type(base[key])(value) if key in base and base[key] is not None else float(value)
    r = args.results
    source = sorted(str(p) for p in (r / "images" / base["source_survey"]).glob("shard-*.h5"))
    target = sorted(str(p) for p in (r / "images" / base["target_survey"]).glob("shard-*.h5"))
    sersic = str(r / "structure" / "sersic.parquet") if base["sersic_base"] else None
    truth = r / "catalog" / "truth.parquet"
    rows = []
    for variant in args.variant or ["base"]:
        params = dict(base)
        diffusion = r / "superres" / "diffusion" / "model.pt"
        work = args.work / variant.replace(":", "-").replace("+", "_")
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.process_time()
        retrain = False
        for setting in variant.split("+"):
            kind, _, value = setting.partition(":")
            if kind == "ema":
                params["ema_decay"], retrain = float(value), True
            elif kind == "epochs":
                params["diffusion_epochs"], retrain = int(value), True
            elif kind == "eta":
                params["eta"] = float(value)
            elif kind == "steps":
                params["sample_steps"] = int(value)
            elif kind != "base":
                raise SystemExit(f"unknown variant {variant!r}")
        if retrain:
            diffusion = work / "diffusion.pt"
            if not diffusion.exists():
                history = str(work / "history.csv")
                superres_train_file("diffusion", params, seed, source, target, str(diffusion), history, sersic)
        superres_structure_file(
            params, seed, source, target, str(diffusion), str(r / "superres" / "regression" / "model.pt"),
            str(work / "structure.csv"), str(work / "structure_galaxies.parquet"), str(work / "calibration.csv"),
            sersic, str(truth) if truth.exists() else None, {"seed": seed, "surveys": cfg["surveys"]}, split=args.split,
        )  # fmt: skip
        st = pd.read_csv(work / "structure.csv").set_index(["method", "quantity"])
        cal = pd.read_csv(work / "calibration.csv").set_index("metric")["value"]
        rows.append({
            "variant": variant,
            "re_scatter_dex": st.loc[("diffusion_draws", "re_arcsec"), "scatter"],
            "re_bias_dex": st.loc[("diffusion_draws", "re_arcsec"), "bias"],
            "re_coverage_noiseless": cal["re_coverage_noiseless"],
            "pixel_coverage_noiseless": cal["pixel_coverage_noiseless"],
            "pixel_coverage_raw": cal["pixel_coverage_noiseless_raw"],
            "spread_scale": cal["spread_scale"],
            "invented_arms": cal["invented_arms_fraction"],
            "featureless_A_bias": cal["featureless_asymmetry_bias"],
            **{f"{q}_mean": st.loc[("diffusion_mean", q), "scatter"] for q in STRUCTURE},
            **{f"{q}_decals": st.loc[("decals", q), "scatter"] for q in STRUCTURE[1:]},
            "cpu_s": time.process_time() - t0,
        })  # fmt: skip
        print(pd.DataFrame(rows).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
