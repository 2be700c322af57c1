"""What the DECaLS-vs-Euclid effective-radius scatter is made of, on a finished run (docs/superres.md).

The super-resolution stage compares Sérsic half-light radii (Re, arcsec) fitted to the
DECaLS image and to the Euclid VIS image of the same held-out galaxies: the DECaLS fit
already lands within ~0.035 dex of Euclid's. This script splits that scatter into its
parts, against the mock's truth, on the run's own held-out galaxies and masks:

1. **Noise**: each held-out galaxy is drawn again without noise by the mock
   (:func:`galmap.mock.render.draw`, neighbours included, the survey's PSF), on the DECaLS
   grid and on the Euclid comparison grid (binned and cropped as the stage does), and
   fitted with the same inverse variances (so the same masks) as the observed images.
   The noiseless DECaLS and Euclid fits differ by the part of the scatter that is not
   noise; two new noise realisations measure how much noise moves each survey's Re.
2. **Population**: the noiseless scatter per truth population (single-Sérsic galaxies,
   spirals, lenticulars, large galaxies).
3. **Predictability**: a random forest and gradient boosting (fixed hyperparameters,
   seeded) trained on the stage's *training* galaxies to predict
   ``log10(Re_Euclid / Re_DECaLS)`` from what DECaLS measures (the Sérsic fit: n, Re, q,
   χ²/ν, magnitude, colours; statmorph: C, A, S, Gini, M20, half-light and Petrosian
   radii), scored on the held-out galaxies: if the correction were a function of the
   DECaLS measurements, the scatter left would drop well below the DECaLS fit's.

Usage (about 3 CPU-minutes on the default sky)::

    python experiments/superres_re_budget.py RUN_DIR [--config-seed SEED] [--out table.csv]

``RUN_DIR`` is a finished run's directory (the repository root for the default run,
``runs/seed2027`` for the second sky); the seed must be the run's (``--config-seed``,
default: the default config's).
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _noiseless(truth: pd.DataFrame, ids: np.ndarray, config: dict) -> dict[str, np.ndarray]:
    """Noiseless DECaLS g, r, z and Euclid VIS stamps (flux per pixel) of ``ids``, as the mock drew them."""
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.render import GalaxyModel, draw

    surveys = surveys_from_config(config)
    field = max(s.fov_arcsec for s in surveys.values())  # the field of the render job (every survey at once)
    rows = truth.set_index("id").loc[list(ids)].reset_index().to_dict("records")
    out = {}
    for name in (config["superres"]["source_survey"], config["superres"]["target_survey"]):
        s = surveys[name]
        out[name] = np.zeros((len(rows), len(s.bands), s.stamp_px, s.stamp_px), np.float32)
    for i, row in enumerate(rows):
        model = GalaxyModel(row, int(config["seed"]), field)
        for name, images in out.items():
            s = surveys[name]
            for j, band in enumerate(s.bands):
                images[i, j] = draw(model, s, band)
    return out


def _with_noise(clean: np.ndarray, ivar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` plus Gaussian noise of the observed inverse variance (no noise where ``ivar`` is 0)."""
    sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0)
    return (clean + rng.normal(size=clean.shape) * sigma).astype(np.float32)


def _scatter(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Median and normal-scaled MAD (dex) of log10(a / b) over the finite pairs, and their number."""
    from galmap.core.stats import robust_std

    d = np.log10(a) - np.log10(b)
    ok = np.isfinite(d)
    return float(np.median(d[ok])), float(robust_std(d[ok])), int(ok.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's directory")
    ap.add_argument("--config-seed", type=int, default=None, help="the run's seed (default: the config's)")
    ap.add_argument("--out", type=Path, default=None, help="write the table here (CSV)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    from galmap.core.config import load_config
    from galmap.core.io import read_table
    from galmap.images2images.superres import _bad_fit, bin_stamps, fit_re, load_pairs

    torch.set_num_threads(1)
    config = load_config([], REPO / "workflow" / "schemas" / "config.schema.yaml")
    if args.config_seed is not None:
        config["seed"] = args.config_seed
    params, seed = config["superres"], int(config["seed"])
    run = args.run
    src_paths = sorted(glob.glob(str(run / "results" / "images" / params["source_survey"] / "shard-*.h5")))
    tgt_paths = sorted(glob.glob(str(run / "results" / "images" / params["target_survey"] / "shard-*.h5")))
    if not src_paths or not tgt_paths:
        raise SystemExit(f"{run}: no preprocessed {params['source_survey']}/{params['target_survey']} shards")
    sersic = read_table(run / "results" / "structure" / "sersic.parquet")
    truth = read_table(run / "results" / "catalog" / "truth.parquet")
    data = load_pairs(src_paths, tgt_paths, params, seed, None, sersic)
    test = np.flatnonzero(data.split == "test")
    ids = data.ids[test]
    t_psf, t_pix = data.target_psf, data.target_pixscale
    s_psf, s_pix = data.native.extra["psf"], data.source_pixscale
    s_ivar, t_ivar = data.native.ivar[test], data.target_ivar[test]

    def fit(images: np.ndarray, ivar: np.ndarray, psf: np.ndarray, pix: float) -> np.ndarray:
        re, flag = fit_re(images, ivar, psf, pix, params)
        return np.where(_bad_fit(re, flag), np.nan, re)

    # 1. noise
    clean = _noiseless(truth, ids, config)
    s_clean = clean[params["source_survey"]]
    bin_, size = int(params["target_bin"]), int(params["target_px"])
    full = clean[params["target_survey"]].shape[-1] // bin_
    margin = ((full - size) // 2) * bin_
    t_full = clean[params["target_survey"]][..., margin:, margin:]
    t_clean, _ = bin_stamps(t_full, np.ones_like(t_full), bin_)
    t_clean = t_clean[..., :size, :size]
    rng = np.random.default_rng([seed, 2027_11])
    re = {
        "decals_observed": fit(data.native.images[test], s_ivar, s_psf, s_pix),
        "euclid_observed": fit(data.target_flux[test], t_ivar, t_psf, t_pix),
        "decals_noiseless": fit(s_clean, s_ivar, s_psf, s_pix),
        "euclid_noiseless": fit(t_clean, t_ivar, t_psf, t_pix),
    }
    for k in (1, 2):
        re[f"decals_noise{k}"] = fit(_with_noise(s_clean, s_ivar, rng), s_ivar, s_psf, s_pix)
        re[f"euclid_noise{k}"] = fit(_with_noise(t_clean, t_ivar, rng), t_ivar, t_psf, t_pix)
    rows = []

    def add(part: str, population: str, a: np.ndarray, b: np.ndarray, sel: np.ndarray | None = None) -> None:
        sel = np.ones(len(a), bool) if sel is None else sel
        med, sd, n = _scatter(a[sel], b[sel])
        rows.append({"part": part, "population": population, "n": n, "median_dex": med, "scatter_dex": sd})

    add("observed: DECaLS vs Euclid", "all", re["decals_observed"], re["euclid_observed"])
    add("noiseless: DECaLS vs Euclid", "all", re["decals_noiseless"], re["euclid_noiseless"])
    for k in (1, 2):
        for sv in ("decals", "euclid"):
            add(f"noise realisation {k}: {sv} vs its noiseless fit", "all", re[f"{sv}_noise{k}"], re[f"{sv}_noiseless"])
    # 2. populations (truth)
    t = truth.set_index("id").loc[list(ids)]
    pops = {
        "single-Sérsic": t["is_single_sersic"].to_numpy(bool),
        "spirals (arms)": (t["arm_frac"] > 0).to_numpy(),
        "lenticulars": (t["type"] == "lenticular").to_numpy(),
        "Re > 2.2 arcsec": (t["re_light_weighted_arcsec"] > 2.2).to_numpy(),
    }
    for name, sel in pops.items():
        add("noiseless: DECaLS vs Euclid", name, re["decals_noiseless"], re["euclid_noiseless"], sel)
    # 3. predictability of the DECaLS -> Euclid Re correction from what DECaLS measures
    train = np.flatnonzero(data.split == "train")
    re_tr = {
        "decals": fit(data.native.images[train], data.native.ivar[train], s_psf, s_pix),
        "euclid": fit(data.target_flux[train], data.target_ivar[train], t_psf, t_pix),
    }
    feats = _features(run, config)
    x_tr = feats.reindex(data.ids[train].astype(str)).to_numpy(float)
    x_te = feats.reindex(ids.astype(str)).to_numpy(float)
    y_tr = np.log10(re_tr["euclid"] / re_tr["decals"])
    y_te = np.log10(re["euclid_observed"] / re["decals_observed"])
    ok_tr = np.isfinite(y_tr) & np.isfinite(x_tr).all(1)
    ok_te = np.isfinite(y_te) & np.isfinite(x_te).all(1)
    models = {
        "random forest": RandomForestRegressor(n_estimators=300, min_samples_leaf=5, random_state=seed, n_jobs=1),
        "gradient boosting": GradientBoostingRegressor(
            n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=seed
        ),
    }
    from galmap.core.stats import robust_std

    for name, model in models.items():
        model.fit(x_tr[ok_tr], y_tr[ok_tr])
        resid = y_te[ok_te] - model.predict(x_te[ok_te])
        rows.append(
            {
                "part": f"DECaLS Re corrected by a {name} trained on {int(ok_tr.sum())} galaxies, vs Euclid",
                "population": "all",
                "n": int(ok_te.sum()),
                "median_dex": float(-np.median(resid)),
                "scatter_dex": float(robust_std(resid)),
            }
        )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(f"run {run} (seed {seed}), {len(test)} held-out galaxies; Re scatter = normal-scaled MAD of log10 ratios")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        table.to_csv(args.out, index=False)


def _features(run: Path, config: dict) -> pd.DataFrame:
    """Per galaxy: the DECaLS Sérsic fit (n, log Re, q, χ²/ν, r magnitude, g−r, r−z) and statmorph's measures."""
    from galmap.core.io import read_table

    sersic = read_table(run / "results" / "structure" / "sersic.parquet")
    morph = read_table(run / "results" / "structure" / "morphometry.parquet")
    wide = sersic.pivot(index="id", columns="band", values=["n", "re_arcsec", "q", "chi2_nu", "mag"])
    r = "r"
    feats = pd.DataFrame(
        {
            "n": wide[("n", r)],
            "log_re": np.log10(wide[("re_arcsec", r)]),
            "q": wide[("q", r)],
            "chi2_nu": wide[("chi2_nu", r)],
            "mag_r": wide[("mag", r)],
            "g_r": wide[("mag", "g")] - wide[("mag", r)],
            "r_z": wide[("mag", r)] - wide[("mag", "z")],
        }
    )
    cols = ["concentration", "asymmetry", "smoothness", "gini", "m20", "rhalf_circ", "rpetro_circ"]
    return feats.join(morph.set_index("id")[cols])


if __name__ == "__main__":
    main()
