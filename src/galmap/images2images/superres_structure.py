"""The structure a super-resolved image recovers, against the Euclid image, with calibrated draws.

**Measures** (:func:`measure_structure`, the same code on every version of a galaxy): the
Sérsic index ``sersic_n`` and half-light semi-major axis ``re_arcsec``
(:func:`galmap.images2images.superres.fit_sersic`, with the image's PSF and inverse
variance), statmorph's ``concentration, asymmetry, smoothness, gini, m20``
(:func:`galmap.structure.morphometry.measure_batched`, on the galaxy's segment) and an
arm/bar measure ``arm_m2``: the flux-weighted m = 2 azimuthal Fourier amplitude over the
segment's deprojected annuli (:mod:`galmap.nn.imagemetrics`; relative to m = 0,
dimensionless). The versions: the DECaLS image measured directly (its native stamp, the
g, r, z combined with the bicubic baseline's VIS weights, its own segment and PSF), the
bicubic and regression images, each diffusion draw (summarised by the median over the
draws) and the mean of the draws, all on the target grid with the Euclid image's
segment, inverse variance and PSF.

**Summary** (:func:`structure_table`): per method and quantity, against the Euclid
image: ``bias`` = median difference (Re in dex: log10 ratio), ``scatter`` = 1.4826 x
MAD of the difference after removing the bias (:func:`galmap.core.stats.robust_std`),
and for the draws ``coverage``: the fraction of galaxies whose Euclid value lies inside
the draws' 16th-84th percentiles (:func:`interval_coverage`).

**Calibration** (:func:`fit_spread_scale`): draws are widened or narrowed about their
mean, ``mean + k (draw - mean)``, with the one factor ``k`` that gives a 68 % coverage
of the noiseless Euclid pixels inside the galaxy's segment on the **validation**
galaxies; the held-out galaxies' draws are measured with it.

**Invented structure**: on galaxies whose truth has no arms, bar, clumps or companion,
the fraction where the draws show arms (median ``arm_m2`` over the draws above the
threshold) and the Euclid image does not (the same measure and threshold); the
threshold is the ``arm_m2`` that best separates (balanced accuracy) the validation
galaxies with visible arms or a bar from those without, on their Euclid images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.stats import balanced_accuracy, robust_std
from galmap.nn.imagemetrics import ellipse_of, fourier_amplitudes, fourier_annuli

log = logging.getLogger("galmap")

#: the quantities of the structure table (Re in arcsec; arm_m2 the m = 2 Fourier amplitude)
QUANTITIES = ("sersic_n", "re_arcsec", "concentration", "asymmetry", "smoothness", "gini", "m20", "arm_m2")
#: the versions compared with the Euclid image (``euclid_noiseless``: the mock's noiseless rendering, the Euclid noise)
STRUCTURE_METHODS = ("decals", "bicubic", "regression", "diffusion_draws", "diffusion_mean", "euclid_noiseless")
#: columns of ``superres/structure.csv``
STRUCTURE_COLUMNS = ["method", "quantity", "unit", "n_galaxies", "bias", "scatter", "coverage_16_84", "split"]
#: the percentiles of the draws' interval
INTERVAL = (16.0, 84.0)


def arm_amplitude(images: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The m = 2 Fourier amplitude (flux-weighted mean of |a_2| over deprojected annuli) of (N, H, W) images.

    ``valid`` (N, H, W) bool: the pixels measured (the galaxy's segment with data). NaN where no
    annulus qualifies (:func:`galmap.nn.imagemetrics.fourier_annuli`).
    """
    out = np.full(len(images), np.nan)
    for i, (img, ok) in enumerate(zip(images, valid, strict=True)):
        if not ok.any():
            continue
        a, w = fourier_annuli(img, ok, ellipse_of(img, ok), modes=(2,))
        if w.size and w.sum() > 0:
            out[i] = fourier_amplitudes(a, w)[0]
    return out


def measure_structure(
    images: np.ndarray,
    ivar: np.ndarray,
    segmap: np.ndarray,
    psf: np.ndarray,
    pixscale: float,
    params: Mapping[str, Any],
    galaxy_psf: np.ndarray | None = None,
) -> pd.DataFrame:
    """The :data:`QUANTITIES` of (N, 1, H, W) images (one band) with their (N, 1, H, W) inverse variance.

    ``segmap`` (N, H, W): 1 the galaxy, > 1 neighbours (masked), 0 sky; ``psf`` (1, P, P) the
    images' PSF, ``galaxy_psf`` (N, 1, P, P) each galaxy's own in its place (None: ``psf`` for all);
    ``pixscale`` arcsec per pixel. Failed fits and measurements are NaN. statmorph's measures are
    computed in float32 (:func:`galmap.structure.morphometry.measure_batched`'s option): 11 % cheaper than
    float64, and within 2e-5 of it on 224 validation images (Euclid and draws; every flag the same).
    """
    import torch

    from galmap.images2images.superres import _bad_fit, fit_sersic
    from galmap.structure.morphometry import measure_batched

    re, n, flag = fit_sersic(images, ivar, psf, pixscale, params, galaxy_psf)
    bad = _bad_fit(re, flag)
    morph, _ = measure_batched(images[:, 0], ivar[:, 0], segmap, device="cpu", dtype=torch.float32)
    table = pd.DataFrame({"sersic_n": np.where(bad, np.nan, n), "re_arcsec": np.where(bad, np.nan, re)})
    # statmorph's flag 2 ("bad") is not a reason to drop a value here: on the 9.6" grid it fires for most galaxies
    # (no 32-px sky box beside a large segment, the MID statistics), whose C, A, S, Gini and M20 are defined;
    # catastrophic failures (flag 4, NaN) and statmorph's invalid values (-99) are dropped
    for k in ("concentration", "asymmetry", "smoothness", "gini", "m20"):
        v = morph[k].to_numpy(np.float64)
        table[k] = np.where((morph["flag"].to_numpy() >= 4) | (v == -99.0), np.nan, v)
    table["arm_m2"] = arm_amplitude(images[:, 0], (segmap == 1) & (ivar[:, 0] > 0))
    table["morph_flag"] = morph["flag"].to_numpy()
    return table


def interval_coverage(truth: np.ndarray, draws: np.ndarray, interval: tuple[float, float] = INTERVAL) -> float:
    """Fraction of ``truth`` (...) inside the draws' (D, ...) ``interval`` percentiles (NaN-aware; NaN if none)."""
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(draws, interval, axis=0) if np.isfinite(draws).any() else (np.nan, np.nan)
    ok = np.isfinite(truth) & np.isfinite(lo) & np.isfinite(hi)
    if not np.any(ok):
        return float("nan")
    t = np.asarray(truth)[ok]
    return float(np.mean((t >= np.asarray(lo)[ok]) & (t <= np.asarray(hi)[ok])))


def bias_scatter(values: np.ndarray, reference: np.ndarray, log_scale: bool = False) -> tuple[float, float, int]:
    """Median difference, 1.4826 x MAD of the difference about it, and the number of galaxies with both.

    ``log_scale``: the difference of log10 values (dex).
    """
    v, r = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if log_scale:
        with np.errstate(invalid="ignore", divide="ignore"):
            v, r = np.log10(np.where(v > 0, v, np.nan)), np.log10(np.where(r > 0, r, np.nan))
    d = v - r
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan"), 0
    return float(np.median(d)), robust_std(d), int(d.size)


def structure_table(
    measures: Mapping[str, pd.DataFrame], draws: list[pd.DataFrame], euclid: pd.DataFrame, split: str
) -> pd.DataFrame:
    """The structure table (:data:`STRUCTURE_COLUMNS`) from per-method measure tables.

    ``measures``: method -> table of :data:`QUANTITIES` (one row per galaxy, the galaxies of
    ``euclid``); ``draws``: one such table per diffusion draw (summarised by the median over the
    draws, and giving the coverage).
    """
    stack = {q: np.stack([d[q].to_numpy(np.float64) for d in draws]) for q in QUANTITIES}
    all_measures = dict(measures)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            all_measures["diffusion_draws"] = pd.DataFrame({q: np.nanmedian(stack[q], axis=0) for q in QUANTITIES})
    rows = []
    for m in STRUCTURE_METHODS:
        if m not in all_measures:
            continue
        for q in QUANTITIES:
            log_q = q == "re_arcsec"
            b, s, n = bias_scatter(all_measures[m][q].to_numpy(), euclid[q].to_numpy(), log_q)
            cov = interval_coverage(euclid[q].to_numpy(np.float64), stack[q]) if m == "diffusion_draws" else np.nan
            rows.append(
                {"method": m, "quantity": q, "unit": "dex" if log_q else "", "n_galaxies": n, "bias": b, "scatter": s,
                 "coverage_16_84": cov, "split": split}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=STRUCTURE_COLUMNS)


def calibrate_draws(draws: np.ndarray, k: float) -> np.ndarray:
    """Draws (D, N, ...) widened about their mean by the factor ``k``: ``mean + k (draw - mean)``."""
    mean = draws.mean(0, keepdims=True)
    return mean + np.float32(k) * (draws - mean)


def fit_spread_scale(draws: np.ndarray, truth: np.ndarray, select: np.ndarray, target: float = 0.68) -> float:
    """The factor ``k`` of :func:`calibrate_draws` whose 16-84 % interval covers ``target`` of ``truth``.

    ``draws`` (D, N, ...), ``truth`` (N, ...), ``select`` (N, ...) bool: the pixels counted. A grid
    of k from 0.25 to 8 (log-spaced); the coverage grows with k.
    """
    mean = draws.mean(0)
    lo, hi = np.percentile(draws - mean, INTERVAL, axis=0)
    dev = (truth - mean)[select]
    lo, hi = lo[select], hi[select]
    grid = np.geomspace(0.25, 8.0, 200)
    cov = np.array([np.mean((dev >= k * lo) & (dev <= k * hi)) for k in grid])
    return float(grid[np.argmin(np.abs(cov - target))])


def featureless(truth: pd.DataFrame) -> np.ndarray:
    """Galaxies whose truth has no arms, no bar, no clumps and no companion (bool, one per row)."""
    col = truth.get
    arms = col("arm_frac", pd.Series(0.0, index=truth.index)).fillna(0).to_numpy() > 0
    arms &= col("arm_count", pd.Series(1, index=truth.index)).fillna(0).to_numpy() > 0
    bar = col("bar_frac", pd.Series(0.0, index=truth.index)).fillna(0).to_numpy() > 0
    clumps = (col("n_clumps", pd.Series(0, index=truth.index)).fillna(0).to_numpy() > 0) & (
        col("clump_frac", pd.Series(1.0, index=truth.index)).fillna(0).to_numpy() > 0
    )
    companion = col("companion_flux_ratio", pd.Series(0.0, index=truth.index)).fillna(0).to_numpy() > 0
    return ~(arms | bar | clumps | companion)


def has_visible_arms_or_bar(truth: pd.DataFrame) -> np.ndarray:
    """The mock's visibility labels: visible spiral arms or a (weak or strong) bar (bool, one per row)."""
    arms = truth.get("visible_has-spiral-arms", pd.Series("", index=truth.index)).astype(str).to_numpy() == "yes"
    bar = truth.get("visible_bar", pd.Series("", index=truth.index)).astype(str).isin(["weak", "strong"]).to_numpy()
    return arms | bar


def arm_threshold(arm: np.ndarray, label: np.ndarray) -> float:
    """The ``arm_m2`` threshold (``value > t`` = arms) with the best balanced accuracy for the labels ``label``."""
    ok = np.isfinite(arm)
    a, y = arm[ok], np.asarray(label, bool)[ok]
    if a.size == 0 or y.all() or not y.any():
        return float("nan")
    grid = np.unique(a)
    scores = [balanced_accuracy(y, a > t) for t in grid]
    return float(grid[int(np.argmax(scores))])


def invented_arms(draw_arm: np.ndarray, euclid_arm: np.ndarray, threshold: float) -> tuple[float, int]:
    """Fraction of galaxies whose draws show arms (median over the draws (D, N) > ``threshold``)
    and whose Euclid image does not, and the number of galaxies with both measures."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(draw_arm, axis=0)
    ok = np.isfinite(med) & np.isfinite(euclid_arm)
    if not ok.any() or not np.isfinite(threshold):
        return float("nan"), int(ok.sum())
    return float(np.mean((med[ok] > threshold) & (euclid_arm[ok] <= threshold))), int(ok.sum())


#: rows of ``superres/calibration.csv`` (``metric, value, split``)
CALIBRATION_METRICS = (
    "spread_scale", "pixel_coverage_noiseless_raw", "pixel_coverage_noiseless", "pixel_coverage_euclid",
    "re_coverage_noiseless", "re_coverage_euclid", "arm_threshold", "n_featureless", "invented_arms_fraction",
    "featureless_asymmetry_bias", "featureless_asymmetry_euclid_noise", "featureless_arm_bias",
    "featureless_arm_euclid_noise",
)  # fmt: skip


def _subset(split: np.ndarray, name: str, k: int, seed: int) -> np.ndarray:
    """A fixed, seeded subset of ``k`` galaxies of split ``name`` (indices, sorted; all when fewer)."""
    idx = np.flatnonzero(split == name)
    if k <= 0 or len(idx) <= k:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, k, replace=False))


def _noiseless_targets(data, index: np.ndarray, truth: pd.DataFrame, config: Mapping[str, Any], params) -> np.ndarray:
    """The mock's noiseless target images (N, 1, H, W) of galaxies ``index`` on the compared grid (NaN if failed)."""
    from galmap.images2images.superres import target_grid
    from galmap.latent.morphmetrics import render_noiseless

    rows = truth.set_index(truth["id"].astype(str)).reindex([str(g) for g in data.ids[index]]).reset_index(drop=True)
    shard = render_noiseless(rows, config, str(params["target_survey"]))
    bad = ~np.isfinite(shard.images).all((1, 2, 3))
    img, _ = target_grid(np.nan_to_num(shard.images), np.ones_like(shard.images), int(params["target_bin"]),
                         int(params["target_px"]))  # fmt: skip
    img[bad] = np.nan
    return img


def evaluate_structure(
    data,
    diffusion,
    regression,
    params: Mapping[str, Any],
    seed: int,
    truth: pd.DataFrame | None = None,
    config: Mapping[str, Any] | None = None,
    split: str = "test",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The structure table, the per-galaxy measures and the calibration table (see the module docstring).

    ``data``: :class:`galmap.images2images.superres.SuperresData` (with segmaps); ``truth`` and
    ``config`` (``seed``, ``surveys``): the mock's truth, for the noiseless renderings and the
    featureless galaxies (None on real data: the calibration is then fitted against the noisy
    Euclid images and the invented-structure rows are NaN). ``split``: the galaxies measured
    (``"test"``, or ``"val"`` for choosing settings); the spread is calibrated on ``"val"``.
    """
    from galmap.images2images.superres import fit_band_weights, source_psfs
    from galmap.nn.diffusion import sample_draws
    from galmap.nn.image2image import predict_unet

    if data.target_segmap is None or "segmap" not in data.native.extra:
        raise ValueError("superres structure: the preprocessed shards have no segmap")
    n_draws, steps, eta = int(params["structure_draws"]), int(params["sample_steps"]), float(params["eta"])
    test = _subset(data.split, split, int(params["structure_galaxies"]), seed)
    # the calibration galaxies: validation galaxies, never the measured ones (when those are validation galaxies too)
    rest = data.split.copy()
    rest[test] = "measured"
    cal = _subset(rest, "val", int(params["calibration_galaxies"]), seed + 1)
    if len(test) == 0 or len(cal) == 0:
        raise ValueError(f"superres structure: no {split} or validation galaxy to measure")
    mock = truth is not None and config is not None
    seg = data.target_segmap
    in_seg = (seg == 1)[:, None] & data.mask.numpy()
    # the spread calibration on the validation galaxies
    d_cal = np.stack(
        [data.to_flux(d, cal) for d in sample_draws(diffusion, data.cond[cal], 1, n_draws, steps, eta, seed)]
    )
    ref_cal = _noiseless_targets(data, cal, truth, config, params) if mock else data.target_flux[cal]
    sel = in_seg[cal] & np.isfinite(ref_cal)
    k = fit_spread_scale(d_cal, np.nan_to_num(ref_cal), sel)
    log.info("superres structure: spread scale %.3f on %d validation galaxies", k, len(cal))
    # the measured galaxies
    raw = np.stack([data.to_flux(d, test) for d in sample_draws(diffusion, data.cond[test], 1, n_draws, steps, eta,
                                                                 seed + 2)])  # fmt: skip
    draws = calibrate_draws(raw, k).astype(np.float32)
    truth_img, t_ivar, t_seg = data.target_flux[test], data.target_ivar[test], seg[test]
    clean = _noiseless_targets(data, test, truth, config, params) if mock else None
    reg = data.to_flux(predict_unet(regression, data.cond[test]), test).astype(np.float32)
    train = data.split == "train"
    w = fit_band_weights(data.source_flux[train], data.target_flux[train], data.mask[train].numpy())
    cubic = np.einsum("b,nbhw->nhw", w, data.source_flux[test])[:, None].astype(np.float32)
    # DECaLS measured directly: its bands combined with the same weights, its own segment, inverse variance and PSF
    nat = data.native
    n_img, n_ivar, n_psf = combined_source(nat.images[test], nat.ivar[test], nat.extra["psf"], w)
    own = source_psfs(nat, test)  # each galaxy's own PSF (the structure stage's), combined alike
    n_own = None if own is None else combined_psf(own, w)
    psf, pix = data.target_psf, data.target_pixscale

    def measure(images, times=1):
        return measure_structure(images, np.tile(t_ivar, (times, 1, 1, 1)), np.tile(t_seg, (times, 1, 1)), psf, pix,
                                 params)  # fmt: skip

    measures = {
        "euclid": measure(truth_img),
        "decals": measure_structure(
            n_img, n_ivar, nat.extra["segmap"][test], n_psf, data.source_pixscale, params, n_own
        ),  # fmt: skip
        "bicubic": measure(cubic),
        "regression": measure(reg),
        "diffusion_mean": measure(draws.mean(0)),
    }
    all_draws = measure(draws.reshape(-1, *draws.shape[2:]), n_draws)
    per_draw = [all_draws.iloc[i * len(test) : (i + 1) * len(test)].reset_index(drop=True) for i in range(n_draws)]
    if clean is not None:
        measures["euclid_noiseless"] = measure(np.nan_to_num(clean))
    euclid = measures.pop("euclid")
    table = structure_table(measures, per_draw, euclid, split)
    # per galaxy
    ids = data.ids[test].astype(str)
    frames = [m.assign(id=ids, method=name) for name, m in ({"euclid": euclid} | measures).items()]
    frames += [m.assign(id=ids, method=f"draw_{i}") for i, m in enumerate(per_draw)]
    galaxies = pd.concat(frames, ignore_index=True)[["id", "method", *QUANTITIES, "morph_flag"]].assign(split=split)
    # calibration
    re_draws = np.stack([d["re_arcsec"].to_numpy() for d in per_draw])
    arm_draws = np.stack([d["arm_m2"].to_numpy() for d in per_draw])
    sel_t = in_seg[test]
    cal_rows = {
        "spread_scale": k,
        "pixel_coverage_euclid": _pixel_coverage(draws, truth_img, sel_t),
        "re_coverage_euclid": interval_coverage(euclid["re_arcsec"].to_numpy(np.float64), re_draws),
    }
    nan = float("nan")
    cal_rows |= dict.fromkeys(CALIBRATION_METRICS[7:], nan) | {"arm_threshold": nan}
    if clean is not None:
        okc = sel_t & np.isfinite(clean)
        cal_rows["pixel_coverage_noiseless_raw"] = _pixel_coverage(raw, np.nan_to_num(clean), okc)
        cal_rows["pixel_coverage_noiseless"] = _pixel_coverage(draws, np.nan_to_num(clean), okc)
        cal_rows["re_coverage_noiseless"] = interval_coverage(measures["euclid_noiseless"]["re_arcsec"].to_numpy(),
                                                              re_draws)  # fmt: skip
        rows = truth.set_index(truth["id"].astype(str))
        val_all = np.flatnonzero(data.split == "val")
        val_arm = arm_amplitude(data.target_flux[val_all][:, 0], in_seg[val_all][:, 0])
        vt = rows.reindex([str(g) for g in data.ids[val_all]])
        thr = arm_threshold(val_arm, has_visible_arms_or_bar(vt))
        plain = featureless(rows.reindex(ids))
        frac, n_plain = invented_arms(arm_draws[:, plain], euclid["arm_m2"].to_numpy()[plain], thr)
        clean_m = measures["euclid_noiseless"]
        med = {q: np.nanmedian(np.stack([d[q].to_numpy() for d in per_draw]), 0) for q in ("asymmetry", "arm_m2")}
        cal_rows |= {"arm_threshold": thr, "n_featureless": float(n_plain), "invented_arms_fraction": frac}
        for q, name in (("asymmetry", "asymmetry"), ("arm_m2", "arm")):
            e = euclid[q].to_numpy()[plain]
            cal_rows[f"featureless_{name}_bias"] = bias_scatter(med[q][plain], e)[0]
            cal_rows[f"featureless_{name}_euclid_noise"] = bias_scatter(e, clean_m[q].to_numpy()[plain])[1]
    calibration = pd.DataFrame(
        {
            "metric": list(CALIBRATION_METRICS),
            "value": [float(cal_rows[m]) for m in CALIBRATION_METRICS],
            "split": split,
        }
    )
    return table, galaxies, calibration


def combined_source(
    images: np.ndarray, ivar: np.ndarray, psf: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source stamps (N, B, H, W) combined into one band, ``sum_b w_b image_b`` (N, 1, H, W), with its inverse
    variance (0 where a band has no data) and the PSF ``sum_b |w_b| psf_b`` (1, P, P; normalised)."""
    w = np.asarray(weights, np.float64)
    img = np.einsum("b,nbhw->nhw", w, np.nan_to_num(images))[:, None].astype(np.float32)
    var = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), np.inf)
    with np.errstate(invalid="ignore"):
        comb = np.einsum("b,nbhw->nhw", w**2, var)[:, None]
    out_ivar = np.where(np.isfinite(comb) & (comb > 0), 1.0 / np.where(comb > 0, comb, 1.0), 0.0).astype(np.float32)
    return img, out_ivar, combined_psf(psf, w)


def combined_psf(psf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """PSFs (..., B, P, P) of the bands combined as :func:`combined_source` combines them: ``sum_b |w_b| psf_b``
    (..., 1, P, P), normalised to 1."""
    w = np.abs(np.asarray(weights, np.float64))
    p = np.einsum("b,...bpq->...pq", w, np.asarray(psf, np.float64))[..., None, :, :]
    return p / p.sum((-2, -1), keepdims=True)


def _pixel_coverage(draws: np.ndarray, reference: np.ndarray, select: np.ndarray) -> float:
    """Fraction of the ``select``-ed pixels of ``reference`` (N, ...) inside the draws' (D, N, ...) 16-84 % interval."""
    lo, hi = np.percentile(draws, INTERVAL, axis=0)
    inside = (reference >= lo) & (reference <= hi)
    return float(inside[select].mean()) if select.any() else float("nan")
