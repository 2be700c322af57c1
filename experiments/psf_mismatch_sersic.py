"""What the PSF mismatch does to the Sérsic fits, and what each PSF model recovers: the single-Sérsic galaxies.

Run: ``PYTHONPATH=src python experiments/psf_mismatch_sersic.py [--n 0] [--seed 42] [--out psf_mismatch.csv]``

Draws the default sky's population (config/config.yaml; ``--seed`` another sky), keeps its
isolated single-Sérsic galaxies (``is_single_sersic``; ``--n`` > 0: the first n of them),
renders them in DECaLS (:func:`galmap.mock.render.render_shard`, the pipeline's renderer)
and preprocesses them (:func:`galmap.preprocess.stamps.preprocess_shard`), then fits them
(:func:`galmap.structure.measure.fit_sersic_shard`, the structure stage's settings) with:

* ``no_mismatch``: observed through the nominal PSF and fitted with it (the mock without
  ``mock.systematics.psf``; a separate rendering, the same galaxies and noise: the PSF draws
  have their own random stream);

and, observed each through its own PSF (FWHM, Moffat β, shear: the truth), fitted with

* ``nominal``: the survey's nominal PSF (``preprocess.psf: nominal``);
* ``catalogue``: a Moffat of the catalogue's PSF size (``psfsize_decals_<band>``: the true FWHM
  with the catalogue's measurement error, :func:`galmap.mock.systematics.catalogue_psfsize`,
  drawn for the whole population as the pipeline does) and the nominal β
  (``preprocess.psf: catalogue``, the default: what the pipeline does);
* ``true_fwhm``: a Moffat of the true FWHM and the nominal β (no catalogue error);
* ``catalogue_true_beta``: the catalogue's FWHM with the true β (no shear);
* ``true``: the true PSF (FWHM, β and shear).

The last three are diagnostics the pipeline cannot do (it does not know β or the shear):
they say which part of the PSF model limits the fits. Prints, per PSF model, the median
|Δn/n| and |ΔRe/Re| of the r-band rows (the shape is shared by the bands) against the truth
(``bulge_n``, ``bulge_re_arcsec``) over every finite fit and over the fits with ``flag == 0``,
and the median signed errors; then the median signed errors in bins of the r-band FWHM ratio
truth/nominal for ``nominal`` and ``catalogue``, and by the true Moffat β for ``catalogue``.
The last line is machine-readable; ``--out``
writes the per-galaxy table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.core.config import load_config
from galmap.core.io import Shard
from galmap.core.surveys import Survey, moffat_images, surveys_from_config
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.mock.systematics import catalogue_psfsize, galaxy_psf
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.measure import fit_sersic_shard

REPO = Path(__file__).resolve().parents[1]
#: The PSF models compared (see the module docstring), in the order printed.
MODELS = ("no_mismatch", "nominal", "catalogue", "true_fwhm", "catalogue_true_beta", "true")


def _with_profiles(shard: Shard, profiles: np.ndarray) -> Shard:
    """``shard`` with each galaxy's own PSF profile (N, bands, P, P) in place of the PSF it carries."""
    extra = {k: v for k, v in shard.extra.items() if k != "psf_fwhm"} | {"psf_profile": profiles.astype(np.float32)}
    return Shard(shard.images, shard.ivar, shard.ids, shard.attrs, extra)


def _true_profiles(truth: pd.DataFrame, survey: Survey, size: int) -> np.ndarray:
    """Each galaxy's true PSF (FWHM, β, shear: :func:`galmap.mock.systematics.galaxy_psf`) sampled at pixel centres."""
    out = np.empty((len(truth), len(survey.bands), size, size), np.float32)
    for i, row in enumerate(truth.to_dict("records")):
        for j, band in enumerate(survey.bands):
            img = (
                galaxy_psf(row, survey, band)
                .drawImage(nx=size, ny=size, scale=survey.pixscale_arcsec, method="no_pixel")
                .array
            )
            out[i, j] = img / img.sum()
    return out


def _moffats(fwhm: np.ndarray, beta: np.ndarray, survey: Survey, size: int) -> np.ndarray:
    """Moffats (N, bands, P, P) of per-galaxy FWHM (N, bands; arcsec) and β (N), sampled at pixel centres."""
    return np.stack(
        [moffat_images(f, float(b), survey.pixscale_arcsec, size, pixel=False) for f, b in zip(fwhm, beta, strict=True)]
    )


def fit_table(cfg: dict, shard: Shard, truth: pd.DataFrame, model: str, nominal_r: float) -> pd.DataFrame:
    """Fit ``shard`` (``truth``'s galaxies, in order); one row per galaxy with truth, fit and errors."""
    fits = fit_sersic_shard(shard, cfg["structure"])
    r = fits[fits["band"] == "r"].set_index("id")
    t = truth.set_index("id")
    out = pd.DataFrame({
        "id": t.index, "model": model, "n_true": t["bulge_n"], "re_true": t["bulge_re_arcsec"],
        "n_fit": r["n"].reindex(t.index), "re_fit": r["re_arcsec"].reindex(t.index),
        "flag": r["flag"].reindex(t.index), "fwhm_ratio_r": t["psf_fwhm_decals_r"] / nominal_r,
        "psf_beta": t["psf_beta_decals"],
    })  # fmt: skip
    out["dn"] = out["n_fit"] / out["n_true"] - 1
    out["dre"] = out["re_fit"] / out["re_true"] - 1
    return out.reset_index(drop=True)


def summary(t: pd.DataFrame) -> dict[str, float]:
    """Median absolute and signed fractional errors (all finite fits, and flag == 0)."""
    ok = np.isfinite(t["dn"]) & np.isfinite(t["dre"])
    good = ok & (t["flag"] == 0)
    return {
        "n": int(ok.sum()), "n_flag0": int(good.sum()),
        "abs_dn": float(np.median(np.abs(t.loc[ok, "dn"]))), "abs_dre": float(np.median(np.abs(t.loc[ok, "dre"]))),
        "abs_dn_flag0": float(np.median(np.abs(t.loc[good, "dn"]))),
        "abs_dre_flag0": float(np.median(np.abs(t.loc[good, "dre"]))),
        "bias_dn": float(np.median(t.loc[ok, "dn"])), "bias_dre": float(np.median(t.loc[ok, "dre"])),
    }  # fmt: skip


def run(cfg: dict, n: int = 0) -> pd.DataFrame:
    """Every PSF model's fits of the sky's single-Sérsic galaxies (the first ``n``; 0: all), one table."""
    surveys = surveys_from_config(cfg)
    decals = surveys["decals"]
    population = draw_population(cfg)
    psfsize = catalogue_psfsize(population, surveys.values(), cfg["mock"]["systematics"]["psf"], cfg["seed"])
    catalog = pd.concat([population[["id"]], psfsize], axis=1)  # as make_mock_catalog writes it
    truth = population[population["is_single_sersic"]].reset_index(drop=True)
    if n > 0:
        truth = truth.iloc[:n]
    print(f"# {len(truth)} isolated single-Sérsic galaxies (seed {cfg['seed']}), DECaLS g, r, z", flush=True)
    seed, syst, pre = int(cfg["seed"]), cfg["mock"]["systematics"], cfg["preprocess"]
    nominal_r = decals.psf_fwhm_arcsec[decals.bands.index("r")]
    size = int(pre["psf_stamp_px"]) | 1
    beta_nominal = np.full(len(truth), decals.psf_beta)
    tables = []

    def fit(model: str, shard: Shard) -> None:
        t0 = time.process_time()
        tables.append(t := fit_table(cfg, shard, truth, model, nominal_r))
        s = summary(t)
        print(
            f"{model:>20}: median |dn/n| {s['abs_dn']:.4f} |dRe/Re| {s['abs_dre']:.4f} (n={s['n']}); flag 0: "
            f"{s['abs_dn_flag0']:.4f} {s['abs_dre_flag0']:.4f} (n={s['n_flag0']}); median dn/n {s['bias_dn']:+.4f} "
            f"dRe/Re {s['bias_dre']:+.4f}; fit {time.process_time() - t0:.0f} CPU-s",
            flush=True,
        )

    plain = truth.drop(columns=[c for c in truth.columns if c.startswith("psf_")])
    raw = render_shard(plain, [decals], seed, progress=False, systematics=syst)["decals"]
    assert not raw.attrs["psf_varies"]
    fit("no_mismatch", preprocess_shard(raw, pre | {"psf": "nominal"}, progress=False))
    raw = render_shard(truth, [decals], seed, progress=False, systematics=syst)["decals"]
    assert raw.attrs["psf_varies"]
    fit("nominal", preprocess_shard(raw, pre | {"psf": "nominal"}, progress=False))
    shard = preprocess_shard(raw, pre | {"psf": "catalogue"}, progress=False, catalog=catalog)
    assert shard.attrs["psf_source"] == "catalogue"
    fit("catalogue", shard)
    true_fwhm = truth[[f"psf_fwhm_decals_{b}" for b in decals.bands]].to_numpy(float)
    fit("true_fwhm", _with_profiles(shard, _moffats(true_fwhm, beta_nominal, decals, size)))
    beta = truth["psf_beta_decals"].to_numpy(float)
    fit("catalogue_true_beta", _with_profiles(shard, _moffats(shard.extra["psf_fwhm"], beta, decals, size)))
    fit("true", _with_profiles(shard, _true_profiles(truth, decals, size)))
    return pd.concat(tables, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=0, help="the first n single-Sérsic galaxies (0: all)")
    ap.add_argument("--seed", type=int, default=None, help="the sky's seed (default: the config's, 42)")
    ap.add_argument("--out", default="", help="CSV of the per-galaxy errors")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    if args.seed is not None:
        cfg["seed"] = args.seed
    psf = cfg["mock"]["systematics"]["psf"]
    psf["enabled"] = psf["catalogue"] = True
    table = run(cfg, args.n)
    res = {m: summary(table[table["model"] == m]) for m in MODELS}
    for model in ("nominal", "catalogue"):
        t = table[table["model"] == model]
        bins = pd.cut(t["fwhm_ratio_r"], [0, 0.9, 0.97, 1.03, 1.1, 10])
        by = t.groupby(bins, observed=True)[["dn", "dre"]].median()
        print(f"{model} PSF, median signed errors by r-band FWHM truth/nominal:")
        print(by.assign(count=t.groupby(bins, observed=True).size()).to_string(float_format=lambda v: f"{v:+.4f}"))
    t = table[table["model"] == "catalogue"]
    beta = surveys_from_config(cfg)["decals"].psf_beta
    print(f"catalogue PSF (nominal beta {beta}), median signed errors by the true beta:")
    print(t.groupby("psf_beta")[["dn", "dre"]].median().T.to_string(float_format=lambda v: f"{v:+.3f}"))
    if args.out:
        table.to_csv(args.out, index=False)
    cells = " ".join(f"abs_dn_{m}={res[m]['abs_dn']:.4f} abs_dre_{m}={res[m]['abs_dre']:.4f}" for m in MODELS)
    head = f"psf_mismatch_sersic seed={cfg['seed']} n={res['catalogue']['n']} psfsize_error={psf['psfsize_error']}"
    print(f"{head} {cells}")


if __name__ == "__main__":
    main()
