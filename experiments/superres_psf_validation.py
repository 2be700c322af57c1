"""The super-resolution stage's DECaLS Sérsic fit with each galaxy's own PSF or the nominal PSF (validation split).

The stage's evaluation measures the DECaLS Re on the native g, r, z stamp
(:func:`galmap.images2images.superres.fit_re`). It used the survey's nominal PSF for every galaxy; it now
fits each galaxy with its own PSF (:func:`galmap.images2images.superres.source_psfs`: the catalogue's PSF
size with ``preprocess.psf: catalogue``, :func:`galmap.core.surveys.galaxy_psfs`, as the structure stage's
fits and so the Sérsic base). This script scores both on the **validation** galaxies of the default sky
(``galmap.nn.inputs.assign_split``; the test galaxies are not read) against the Euclid image's own Re, as
the evaluation does: the median log10 ratio, the bias in per cent and the scatter (1.4826 x MAD, dex), with
the Sérsic base's for reference, and the paired bootstrap (68 %) of the scatter's change. It also checks the
fits' convergence setting (:data:`galmap.images2images.superres.FIT_TOL`) against the fitter's default on the
same Euclid images.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python experiments/superres_psf_validation.py results \
        --out experiments/tables/superres_psf_validation.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import galmap.images2images.superres as sr
from galmap.core.config import load_config
from galmap.core.io import read_table
from galmap.core.stats import bootstrap_interval, robust_std
from galmap.nn.training import load_model
from galmap.nn.unet import UNet

REPO = Path(__file__).resolve().parents[1]


def _re(fit: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    re, flag = fit
    return np.where(sr._bad_fit(re, flag), np.nan, re)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "tables" / "superres_psf_validation.csv")
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    p = cfg["superres"]
    r = args.results
    src = sorted(str(x) for x in (r / "images" / p["source_survey"]).glob("shard-*.h5"))
    tgt = sorted(str(x) for x in (r / "images" / p["target_survey"]).glob("shard-*.h5"))
    _, meta = load_model(r / "superres" / "diffusion" / "model.pt", UNet, "cpu")
    scales = {k: meta.get(k) for k in ("data_scale", "residual_scale", "base_band_weights")}
    sersic = read_table(r / "structure" / "sersic.parquet") if p["sersic_base"] else None
    data = sr.load_pairs(src, tgt, p, int(cfg["seed"]), None, sersic, scales)
    val = np.flatnonzero(data.split == "val")
    nat, psf, pix = data.native, data.target_psf, data.target_pixscale
    own = sr.source_psfs(nat, val)
    if own is None:
        raise SystemExit("the source shards carry no per-galaxy PSF (preprocess.psf: nominal)")
    t0 = time.process_time()
    re = {"euclid": _re(sr.fit_re(data.target_flux[val], data.target_ivar[val], psf, pix, p))}
    tol = sr.FIT_TOL
    sr.FIT_TOL = 0.01  # the fitter's default, for the convergence check
    re_euclid_tol = _re(sr.fit_re(data.target_flux[val], data.target_ivar[val], psf, pix, p))
    sr.FIT_TOL = tol
    re["sersic_base"] = _re(sr.fit_re(data.base_flux[val], data.target_ivar[val], psf, pix, p))
    args_n = (nat.images[val], nat.ivar[val], nat.extra["psf"], data.source_pixscale, p)
    re["decals_nominal_psf"] = _re(sr.fit_re(*args_n))
    re["decals_galaxy_psf"] = _re(sr.fit_re(*args_n, own))
    print(f"fits: {time.process_time() - t0:.1f} CPU-s for {len(val)} validation galaxies", flush=True)
    ref = np.log10(re["euclid"])
    ratio = {m: np.log10(re[m]) - ref for m in re if m != "euclid"}
    both = np.isfinite(ratio["decals_nominal_psf"]) & np.isfinite(ratio["decals_galaxy_psf"])
    a, b = ratio["decals_nominal_psf"][both], ratio["decals_galaxy_psf"][both]
    lo, hi = bootstrap_interval(lambda i: robust_std(b[i]) - robust_std(a[i]), len(a), int(cfg["seed"]))
    rows = []
    for m, x in ratio.items():
        ok = np.isfinite(x)
        med = float(np.median(x[ok]))
        rows.append({"method": m, "split": "val", "n_galaxies": int(ok.sum()), "re_log_ratio_median": med,
                     "re_bias_percent": 100 * (10**med - 1), "re_log_scatter_dex": robust_std(x[ok])})  # fmt: skip
    d = np.abs(np.log10(re_euclid_tol) - ref)
    table = pd.DataFrame(rows)
    table["galaxy_psf_minus_nominal_scatter_68lo"] = lo
    table["galaxy_psf_minus_nominal_scatter_68hi"] = hi
    table["fit_tol_euclid_dlogre_p90"] = float(np.nanpercentile(d, 90))
    table["fit_tol_euclid_dlogre_max"] = float(np.nanmax(d))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
