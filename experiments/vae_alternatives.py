"""Issue 26: train one VAE variant from config overrides and score its latents on VALIDATION splits.

Usage (one variant per call; rows are appended to ``<out>/alternatives.csv``)::

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python experiments/vae_alternatives.py \\
        --name sys0 --set sys_error=0 --run results --out runs/vae-alternatives

``--set key=value`` overrides a key of the ``vae`` section of ``config/config.yaml``
(values parsed as YAML); ``--model PATH`` scores an already trained model instead
(its CPU-s is then NaN: read it from ``logs/benchmarks/vae``). The run directory holds
``images/<survey>/shard-*.h5``, ``catalog/truth.parquet`` and ``classify/targets.parquet``
of the default sky (seed 42). The test splits are never read:

(a) probes: a random-forest regressor (200 trees, min_samples_leaf 3, seeded) from the
    latent means of the VAE's train split to a truth quantity, R^2 on the VAE's val split,
    within the population that can have the feature (bar_frac among disks, arm_frac among
    spirals with arms, clump_frac among galaxies with clumps, inclination among disks,
    bulge_frac among all);
(b) the classification forest (``classify.rf`` settings, at most ``CV_TREES`` trees) on the latents vs the Galaxy Zoo
    labels: 5-fold stratified cross-validation inside the classification stage's *train*
    split (galaxies of the VAE's test split left out), out-of-fold balanced accuracy per
    question and its mean over the questions;
(c) arms in the reconstructions: on VAE-val spirals with disk axis ratio > 0.5, the project's
    azimuthal Fourier measures (:mod:`galmap.latent.morphmetrics`, the ``vae_morphology`` rule's,
    here against the noisy input in the ``vae.probes.fourier_band`` band inside the segment):
    ``m2_ratio`` = median of ``A2_ratio`` (the reconstruction's m = 2 amplitude over the input's,
    where the input's is resolved) and ``m2_missed`` = median of ``res_m2`` (the fraction of the
    input's m = 2 structure, amplitude and phase annulus by annulus, the reconstruction misses:
    0 = all kept, 1 = none);
(d) CPU-s of the training (process time, one thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from galmap.core.config import load_yaml, merge
from galmap.core.io import read_shard, read_table
from galmap.latent.vae import ConvVAE, encode, loader, train_vae
from galmap.nn.inputs import denormalise
from galmap.nn.training import derived_seed, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
CV_TREES = 100  # trees per cross-validation forest (45 forests per variant on a shared 2-core machine)
DISKS = ("spiral", "lenticular")
PROBES = [  # quantity, population name, population selector on the truth table
    ("bar_frac", "disks", lambda t: t["type"].isin(DISKS)),
    ("arm_frac", "spirals with arms", lambda t: t["arm_count"] > 0),
    ("clump_frac", "with clumps", lambda t: t["n_clumps"] > 0),
    ("bulge_frac", "all", lambda t: t["type"].notna()),
    ("inclination_deg", "disks", lambda t: t["type"].isin(DISKS) & t["inclination_deg"].notna()),
]


def m2_table(model: ConvVAE, data, shard, truth: pd.DataFrame, params: dict) -> pd.DataFrame:
    """(c): per VAE-val face-on spiral, the project's Fourier measures of the reconstruction against the input.

    :func:`galmap.latent.morphmetrics.reconstruction_table` with the noisy input as reference (as on real
    data: no noiseless rendering here), in the ``vae.probes.fourier_band`` band, inside the galaxy's segment.
    """
    from galmap.latent.morphmetrics import reconstruction_table

    bands = list(data.attrs["bands"])
    probe = params["probes"]
    band = bands.index(probe["fourier_band"]) if probe["fourier_band"] in bands else 0
    t = truth.set_index("id")
    keep = [
        i
        for i, (gid, sp) in enumerate(zip(data.ids, data.split, strict=True))
        if sp == "val" and t.at[gid, "arm_count"] > 0 and t.at[gid, "disk_q"] > 0.5
    ]
    if not keep:
        return pd.DataFrame(columns=["id", "A2_ratio", "res_m2"])
    idx = torch.as_tensor(keep)
    with torch.no_grad():
        recon = denormalise(model.decode(model.encode(data.x[idx])[0]), data.attrs["norm_softening"]).numpy()
    return reconstruction_table(
        [str(data.ids[i]) for i in keep],
        shard.images[keep],
        recon,
        shard.extra["segmap"][keep],
        data.w[idx].numpy() > 0,
        None,
        band,
        float(probe["fourier_min_amplitude"]),
    )


def probe_scores(latents: pd.DataFrame, truth: pd.DataFrame, seed: int) -> dict[str, float]:
    """(a): R^2 on the VAE val split of a forest trained on the VAE train split, per quantity."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    mu_cols = [c for c in latents.columns if c.startswith("mu_")]
    df = latents[["id", "split", *mu_cols]].merge(truth, on="id", how="inner")
    out = {}
    for k, (q, _pop, sel) in enumerate(PROBES):
        d = df[sel(df).to_numpy() & df[q].notna().to_numpy()]
        tr, va = d[d["split"] == "train"], d[d["split"] == "val"]
        rf = RandomForestRegressor(200, min_samples_leaf=3, random_state=derived_seed(seed, 26, k), n_jobs=1)
        rf.fit(tr[mu_cols].to_numpy(), tr[q].to_numpy())
        out[f"r2_{q}"] = float(r2_score(va[q].to_numpy(), rf.predict(va[mu_cols].to_numpy())))
        out[f"n_val_{q}"] = len(va)
    return out


def forest_scores(latents: pd.DataFrame, targets: pd.DataFrame, rf_params: dict, seed: int) -> dict[str, float]:
    """(b): out-of-fold balanced accuracy (5-fold, inside the classification train split), per question."""
    from sklearn.model_selection import StratifiedKFold

    from galmap.classify.targets import classification_forest
    from galmap.core.stats import balanced_accuracy

    mu_cols = [c for c in latents.columns if c.startswith("mu_")]
    lat = latents[latents["split"] != "test"].set_index("id")[mu_cols]
    out = {}
    for k, (q, grp) in enumerate(targets[targets["split"] == "train"].groupby("question", sort=True)):
        grp = grp[grp["id"].isin(lat.index)]
        z, y = lat.loc[grp["id"]].to_numpy(), grp["class"].to_numpy()
        n_folds = int(min(5, np.bincount(y).max(), np.bincount(y)[np.bincount(y) > 0].min()))
        pred = np.empty_like(y)
        folds = StratifiedKFold(max(n_folds, 2), shuffle=True, random_state=derived_seed(seed, 26, 100 + k))
        for tr, va in folds.split(z, y):
            trees = min(int(rf_params["n_estimators"]), CV_TREES)
            rf = classification_forest(rf_params | {"n_estimators": trees}, derived_seed(seed, 26, 200 + k))
            rf.fit(z[tr], y[tr])
            pred[va] = rf.predict(z[va])
        out[f"ba_{q}"] = float(balanced_accuracy(y, pred))
    out["ba_mean"] = float(np.mean([v for key, v in out.items() if key.startswith("ba_")]))
    return out


SUMMARY = [
    "cpu_s", "epochs", "r2_bar_frac", "r2_arm_frac", "r2_clump_frac", "r2_bulge_frac", "r2_inclination_deg",
    "ba_mean", "m2_ratio_median", "m2_missed_median", "val_ssim_mean",
]  # fmt: skip


def summary(csv: Path) -> str:
    """The table of alternatives (the last row per name) as markdown.

    ``<name>-rescore`` (a trained model scored again with ``--model``) replaces ``<name>``
    and takes its training's CPU-s and epochs.
    """
    t = pd.read_csv(csv).drop_duplicates("name", keep="last").set_index("name")
    for name in t.index:
        base = name.removesuffix("-rescore")
        if np.isnan(t.at[name, "cpu_s"]) and base != name and base in t.index:
            t.at[name, "cpu_s"], t.at[name, "epochs"] = t.at[base, "cpu_s"], t.at[base, "epochs"]
    t = t.drop(index=[n for n in t.index if f"{n}-rescore" in t.index])  # scored again by a later version
    cols = [c for c in SUMMARY if c in t.columns]
    lines = ["| variant | overrides | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for name, row in t.iterrows():
        cells = [f"{row[c]:.3f}" if c not in ("cpu_s", "epochs") else f"{row[c]:.0f}" for c in cols]
        lines.append(f"| {name.removesuffix('-rescore')} | `{row['overrides']}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def append_row(csv: Path, row: dict) -> None:
    """Add a row to the table of alternatives (the union of the columns: rows may lack some)."""
    table = pd.DataFrame([row])
    if csv.exists():
        table = pd.concat([pd.read_csv(csv), table], ignore_index=True)
    table.to_csv(csv, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summary", action="store_true", help="print the table of <out>/alternatives.csv and stop")
    ap.add_argument("--name")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of a vae.* key")
    ap.add_argument("--latent-dim", type=int, default=None)
    ap.add_argument("--run", default="results", help="results/ of the default sky")
    ap.add_argument("--out", default="runs/vae-alternatives")
    ap.add_argument("--model", default=None, help="score this trained model instead of training one")
    ap.add_argument("--train-only", action="store_true", help="train and save the model; score it later with --model")
    args = ap.parse_args()
    if args.summary:
        print(summary(Path(args.out) / "alternatives.csv"))
        return
    if not args.name:
        ap.error("--name is required to train or score a variant")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    config = load_yaml(REPO / "config" / "config.yaml")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    params = merge(config["vae"], overrides) | {"device": "cpu"}
    seed = int(config["seed"])
    k = args.latent_dim or int(params["latent_dim"])
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p) for p in (run / "images" / params["survey"]).glob("shard-*.h5"))
    truth = read_table(run / "catalog" / "truth.parquet")
    targets = read_table(run / "classify" / "targets.parquet")

    cpu = np.nan
    history = None
    if args.model:
        model, _ = load_model(args.model, ConvVAE, "cpu")
    else:
        t0 = time.process_time()
        model, history, _ = train_vae(paths, params, k, seed, checkpoint=None, progress=False)
        cpu = time.process_time() - t0
        save_model(out / f"model-{args.name}.pt", model, {"model": model.config(), "cpu_s": cpu})
        history.to_csv(out / f"history-{args.name}.csv", index=False)
    model.eval()
    if args.train_only:
        row = {"name": args.name, "overrides": json.dumps(overrides, sort_keys=True), "latent_dim": k, "cpu_s": cpu}
        row |= {"epochs": len(history), "best_epoch": int(history.loc[history["best"], "epoch"].iloc[0])}
        append_row(out / "alternatives.csv", row)
        return
    load = loader(params, seed)
    tables, m2 = [], []
    for p in paths:
        data = load(Path(p))
        tables.append(encode(model, data))
        m2.append(m2_table(model, data, read_shard(p, datasets=("segmap",)), truth, params))
    latents = pd.concat(tables, ignore_index=True)
    latents.to_parquet(out / f"latents-{args.name}.parquet")
    m2t = pd.concat(m2, ignore_index=True)
    ratio = m2t["A2_ratio"].to_numpy(dtype=float)
    val = latents[latents["split"] == "val"]
    row = {
        "name": args.name,
        "overrides": json.dumps(overrides, sort_keys=True),
        "latent_dim": k,
        "cpu_s": round(cpu, 1),
        "epochs": len(history) if history is not None else np.nan,
        "best_epoch": int(history.loc[history["best"], "epoch"].iloc[0]) if history is not None else np.nan,
        "val_ssim_mean": float(val["ssim"].mean()),
        "val_chi2_nu_median": float(val["chi2_nu"].median()),
        **probe_scores(latents, truth, seed),
        **forest_scores(latents, targets, config["classify"]["rf"], seed),
        "m2_ratio_median": float(np.nanmedian(ratio)),
        "m2_missed_median": float(np.nanmedian(m2t["res_m2"].to_numpy(dtype=float))),
        "m2_n": int(np.isfinite(ratio).sum()),
    }
    append_row(out / "alternatives.csv", row)
    print(pd.Series(row).to_string())


if __name__ == "__main__":
    main()
