"""From u, g, r, i, z to Hα: a U-Net that predicts the Hα emission map from the broad-band images.

**Data.** The preprocessed shards of ``halpha.input_survey`` (SDSS-like u, g, r, i, z,
nanomaggies per pixel) and ``halpha.target_survey`` (the Hα map, 1e-17 erg/s/cm^2 per
pixel) are paired by galaxy id; the input is resampled onto the Hα grid when the two
grids differ (:func:`galmap.core.resample.resample_stamps`). Both go through the asinh scale
of :mod:`galmap.nn.inputs` with each shard's ``norm_softening``.

**Loss.** Noise-aware: the squared error on the asinh scale weighted by each target
pixel's inverse variance on that scale (with a fractional systematic error
``sys_error`` added in quadrature), averaged over the pixels with data; pixels
without data (``ivar = 0``, masked neighbours) have zero weight and never reach the
loss. The network predicts the mean Hα map given the broad bands. With ``augment``
(off by default: the validation split preferred it off) each training galaxy is seen under a
random rotation by a multiple of 90 degrees or mirror image in every epoch, the same for its bands, Hα map and weights
(:mod:`galmap.nn.augment`; an Hα map does not depend on how the galaxy lies on the sky).

**Evaluation** (held-out galaxies; the galaxy centre is the stamp centre):

* ``pixel_corr``: Pearson correlation of predicted and observed Hα pixels with data
  inside a circular aperture of radius ``aperture_arcsec``;
* total flux: the predicted map summed over the aperture (a small bias of the
  prediction far from the galaxy would otherwise add up over the stamp), against the
  true total Hα flux (the mock's truth ``flux_Ha`` when a truth table is given, else the observed
  map summed over the aperture), as ``log10(predicted / true)`` in dex;
* the radial profile: azimuthal means in 1-pixel annuli of both maps (stacked in the
  figure) and the Hα half-light radius inside the aperture of each;
* *detectable* Hα: an observed aperture flux at least ``detect_snr`` times its noise.

**Sampling** (optional, ``params["diffusion"]``): :func:`train_diffusion` trains the
conditional diffusion model of :mod:`galmap.nn.diffusion` on the same pairs (the Hα map given
the five bands) and :func:`evaluate_draws` scores the mean of its draws as above, plus the
spread of the draws and its calibration against the truth.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from galmap.core.failures import FailureLog
from galmap.core.resample import resample_stamps
from galmap.core.stats import from_asinh_scale, robust_std
from galmap.nn.diffusion import sample_draws
from galmap.nn.image2image import fit_unet, pixel_step, predict_unet, seeded_unet
from galmap.nn.inputs import assign_split, network_inputs, pair_surveys
from galmap.nn.losses import loss_weights
from galmap.nn.training import TrainSettings, data_digest
from galmap.nn.unet import UNet

log = logging.getLogger("galmap")

#: columns of ``halpha/metrics.csv`` (one row per subset of the held-out galaxies: all, detectable)
METRIC_COLUMNS = [
    "subset", "n_galaxies", "pixel_corr_median", "flux_log_ratio_median_dex", "flux_log_scatter_dex",
    "n_flux", "r50_log_ratio_median_dex", "r50_log_scatter_dex", "train_images_per_s", "predict_images_per_s",
]  # fmt: skip
#: columns of ``halpha/predictions.parquet`` (fluxes in the Hα map's unit, radii in arcsec)
PREDICTION_COLUMNS = [
    "id", "detectable", "snr", "flux_true", "flux_pred", "flux_observed", "pixel_corr", "r50_true_arcsec",
    "r50_pred_arcsec",
]  # fmt: skip


@dataclass
class HalphaData:
    """Paired broad-band inputs ``x`` (N, 5, H, W) and Hα targets ``y`` with weights ``w`` (N, 1, H, W)."""

    ids: np.ndarray
    split: np.ndarray
    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    flux: np.ndarray
    ivar: np.ndarray
    inputs: np.ndarray
    bands: list[str]
    softening: float
    pixscale: float


def load_pairs(
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    failures: FailureLog | None = None,
) -> HalphaData:
    """Read and pair the input and Hα shards (see the module docstring); unusable galaxies go to ``failures``."""
    pairs = pair_surveys(input_paths, target_paths, "halpha", failures=failures, names=("input survey", "Hα survey"))
    src, tgt, ids = pairs.source, pairs.target, pairs.ids
    s_img, s_ivar = pairs.stamps("source")
    t_img, t_ivar = pairs.stamps("target")
    s_scale, t_scale = float(src[0].attrs["pixscale_arcsec"]), float(tgt[0].attrs["pixscale_arcsec"])
    size = t_img.shape[-1]
    s_soft = np.asarray(src[0].attrs["norm_softening"], np.float64)
    if s_img.shape[-1] != size or not np.isclose(s_scale, t_scale):
        s_img, s_ivar = resample_stamps(s_img, s_ivar, s_scale, size, t_scale)
        s_soft = s_soft * (t_scale / s_scale) ** 2
    x, _ = network_inputs(s_img, s_ivar, s_soft)
    t_soft = float(np.asarray(tgt[0].attrs["norm_softening"])[0])
    y, w = network_inputs(t_img, t_ivar, [t_soft], float(params["sys_error"]))
    split = assign_split(ids, seed, float(params["val_fraction"]), float(params["test_fraction"]))
    good = np.isfinite(t_img) & np.isfinite(t_ivar) & (t_ivar > 0)
    return HalphaData(
        ids=np.asarray(ids, dtype=object),
        split=split,
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        w=torch.from_numpy(w),
        flux=np.where(good, t_img, 0).astype(np.float32),
        ivar=np.where(good, t_ivar, 0).astype(np.float32),
        inputs=s_img,
        bands=[str(b) for b in src[0].attrs["bands"]],
        softening=t_soft,
        pixscale=t_scale,
    )


def _fingerprint(name: str, params: Mapping[str, Any], seed: int, data: HalphaData) -> str:
    return f"{name}:{dict(params)}:{seed}:" + data_digest(data.x, data.y, data.w, data.split)


def train_model(
    data: HalphaData, params: Mapping[str, Any], seed: int, device: torch.device, checkpoint=None
) -> tuple[UNet, pd.DataFrame, dict[str, Any]]:
    """Train the ugriz -> Hα U-Net; return it (best validation epoch), its history and its metadata."""
    model = seeded_unet(seed, device, data.x.shape[1], params["channels"])
    step = pixel_step("regression", device, augment=bool(params.get("augment", False)))
    settings = TrainSettings(
        max_epochs=int(params["epochs"]),
        patience=int(params["patience"]),
        learning_rate=float(params["learning_rate"]),
        seed=seed,
        bf16=bool(params.get("bf16", False)),
    )
    model, history, meta = fit_unet(
        model, step, data.split, (data.x, data.y, data.w), int(params["batch_size"]), settings, checkpoint,
        _fingerprint("halpha", params, seed, data), "halpha",
    )  # fmt: skip
    return model, history, meta | {"bands": data.bands}


def diffusion_scale(data: HalphaData) -> float:
    """The standard deviation of the training galaxies' Hα pixels with data, asinh scale.

    The diffusion model works on ``y / scale`` (roughly unit variance, as the noise it
    is mixed with); the scale is stored with the model.
    """
    train_sel = torch.as_tensor(data.split == "train")
    values = data.y[train_sel][data.w[train_sel] > 0]
    return float(values.std()) if values.numel() > 1 and float(values.std()) > 0 else 1.0


def train_diffusion(
    data: HalphaData, params: Mapping[str, Any], seed: int, device: torch.device, checkpoint=None
) -> tuple[UNet, pd.DataFrame, dict[str, Any]]:
    """Train the conditional diffusion model of the Hα map given the broad bands (``params["diffusion"]``).

    The denoiser is a time-conditioned U-Net (``diffusion.channels``) that sees the
    noisy Hα map and the five bands; the loss is :func:`galmap.nn.diffusion.diffusion_loss`
    on the pixels with Hα data, each weighted by its inverse variance to the power
    ``diffusion.loss_weight_power`` (:func:`galmap.nn.losses.loss_weights`). A fixed schedule
    of ``diffusion.epochs``; the last epoch is kept (the validation loss of a diffusion
    model is too noisy to choose by).
    """
    spec = params["diffusion"]
    scale = diffusion_scale(data)
    model = seeded_unet(seed, device, data.x.shape[1], spec["channels"], "diffusion")
    weights = loss_weights(data.w, data.split, float(spec["loss_weight_power"]))
    epochs = int(spec["epochs"])
    settings = TrainSettings(
        max_epochs=epochs,
        patience=epochs,
        learning_rate=float(params["learning_rate"]),
        seed=seed,
        keep="last",
        bf16=bool(params.get("bf16", False)),
    )
    model, history, meta = fit_unet(
        model, pixel_step("diffusion", device, target_scale=scale), data.split, (data.x, data.y, weights),
        int(params["batch_size"]), settings, checkpoint, _fingerprint("halpha diffusion", params, seed, data),
        "halpha diffusion",
    )  # fmt: skip
    return model, history, meta | {"kind": "diffusion", "data_scale": scale, "bands": data.bands}


def sample_maps(model: UNet, x: torch.Tensor, data_scale: float, softening: float, spec: Mapping[str, Any], seed: int):
    """``spec["n_draws"]`` Hα maps per galaxy of ``x`` (n_draws, N, H, W), in the map's flux unit per pixel.

    DDIM with ``spec["sample_steps"]`` steps and ``spec["eta"]`` (:func:`galmap.nn.diffusion.sample_draws`, seeded).
    """
    draws = sample_draws(model, x, 1, int(spec["n_draws"]), int(spec["sample_steps"]), float(spec["eta"]), seed)[
        :, :, 0
    ].astype(np.float64)
    return from_asinh_scale(draws * data_scale, softening)


def predict(model: UNet, x: torch.Tensor, softening: float, batch_size: int = 64) -> np.ndarray:
    """Predicted Hα maps (N, 1, H, W) in the map's flux unit per pixel."""
    return from_asinh_scale(predict_unet(model, x, batch_size).astype(np.float64), softening)


def radial_profiles(maps: np.ndarray, n_bins: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Azimuthal means in 1-pixel annuli around the stamp centre: (N, n_bins) of (N, H, W) maps.

    Only pixels where ``valid`` (N, H, W) is true count (all by default); an annulus without
    any valid pixel is NaN.
    """
    h, w = maps.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).astype(int).ravel()
    keep = r < n_bins
    ok = np.ones(maps.shape, bool) if valid is None else np.asarray(valid, bool)
    flat = np.where(ok, maps, 0).reshape(len(maps), -1)[:, keep]
    okf = ok.reshape(len(maps), -1)[:, keep].astype(float)
    sums = np.stack([np.bincount(r[keep], weights=f, minlength=n_bins) for f in flat])
    counts = np.stack([np.bincount(r[keep], weights=o, minlength=n_bins) for o in okf])
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def half_light_radius(maps: np.ndarray, aperture_px: float) -> np.ndarray:
    """Radius (pixels) enclosing half the flux inside the aperture, per map (NaN without positive flux).

    The pixels are taken in order of their centre's distance from the stamp centre; the n
    pixels up to a distance cover a disc of radius sqrt(n / pi), and the radius is
    interpolated linearly in the enclosed flux between those discs (from 0 at radius 0), so
    it is continuous rather than quantised to the pixels' distances.
    """
    h, w = maps.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).ravel()
    inside = r <= aperture_px
    distances, which = np.unique(np.round(r[inside], 9), return_inverse=True)
    radii = np.concatenate([[0.0], np.sqrt(np.cumsum(np.bincount(which)) / np.pi)])
    out = np.full(len(maps), np.nan)
    for i, m in enumerate(maps.reshape(len(maps), -1)):
        cum = np.concatenate([[0.0], np.cumsum(np.bincount(which, weights=m[inside], minlength=len(distances)))])
        if cum[-1] <= 0:
            continue
        half = 0.5 * cum[-1]
        k = max(1, min(int(np.searchsorted(cum, half)), len(cum) - 1))
        step = cum[k] - cum[k - 1]
        frac = (half - cum[k - 1]) / step if step > 0 else 1.0
        out[i] = radii[k - 1] + np.clip(frac, 0.0, 1.0) * (radii[k] - radii[k - 1])
    return out


def evaluate(
    data: HalphaData,
    model: UNet,
    params: Mapping[str, Any],
    truth: pd.DataFrame | None,
    failures: FailureLog,
    train_rate: float,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Metrics, per-galaxy predictions and examples of the held-out galaxies (see the module docstring)."""
    test = _held_out(data)
    t0 = time.perf_counter()
    pred = predict(model, data.x[test], data.softening)[:, 0]
    rate = len(test) / max(time.perf_counter() - t0, 1e-9)
    return evaluate_maps(data, pred, params, truth, failures, train_rate, rate)


def _held_out(data: HalphaData) -> np.ndarray:
    test = np.flatnonzero(data.split == "test")
    if len(test) == 0:
        raise ValueError("halpha: no held-out galaxy (raise halpha.test_fraction)")
    return test


def _aperture(data: HalphaData, params: Mapping[str, Any]) -> tuple[np.ndarray, float]:
    """The circular aperture of radius ``aperture_arcsec`` around the stamp centre (H, W) and its radius in pixels."""
    h, w = data.flux.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    ap_px = float(params["aperture_arcsec"]) / data.pixscale
    return np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= ap_px, ap_px


def evaluate_maps(
    data: HalphaData,
    pred: np.ndarray,
    params: Mapping[str, Any],
    truth: pd.DataFrame | None,
    failures: FailureLog,
    train_rate: float,
    predict_rate: float,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """:func:`evaluate` of given predicted maps ``pred`` (N_test, H, W; flux per pixel) of the held-out galaxies."""
    test = _held_out(data)
    ids = data.ids[test].astype(str)
    rate = predict_rate
    obs, ivar = data.flux[test, 0], data.ivar[test, 0]
    h, w = obs.shape[-2:]
    aperture, ap_px = _aperture(data, params)
    valid = (ivar > 0) & aperture[None]
    var = np.divide(1.0, ivar, out=np.zeros_like(ivar, dtype=np.float64), where=ivar > 0)
    f_obs = np.where(valid, obs, 0).sum((1, 2))
    noise = np.sqrt(np.where(valid, var, 0).sum((1, 2)))
    snr = np.divide(f_obs, noise, out=np.zeros_like(f_obs, dtype=np.float64), where=noise > 0)
    detectable = snr >= float(params["detect_snr"])
    corr = np.full(len(test), np.nan)
    for i in range(len(test)):
        v = valid[i]
        a, b = obs[i][v], pred[i][v]
        if v.sum() < 3 or a.std() == 0 or b.std() == 0:
            failures.add(ids[i], "halpha: no pixel correlation (fewer than 3 valid pixels or a constant map)")
            continue
        corr[i] = float(np.corrcoef(a, b)[0, 1])
    f_pred = np.where(aperture[None], pred, 0).sum((1, 2)).astype(np.float64)
    if truth is not None and "flux_Ha" in truth:
        f_true = truth.set_index("id")["flux_Ha"].reindex(ids).to_numpy(np.float64)
    else:
        f_true = f_obs
    r50_true = half_light_radius(np.where(valid, obs, 0), ap_px) * data.pixscale
    r50_pred = half_light_radius(np.where(aperture[None], pred, 0), ap_px) * data.pixscale
    table = pd.DataFrame(
        {
            "id": ids, "detectable": detectable, "snr": snr, "flux_true": f_true, "flux_pred": f_pred,
            "flux_observed": f_obs, "pixel_corr": corr,
            "r50_true_arcsec": np.where(detectable, r50_true, np.nan),
            "r50_pred_arcsec": np.where(detectable, r50_pred, np.nan),
        }
    )[PREDICTION_COLUMNS]  # fmt: skip
    rows = []
    for subset, sel in (("all", np.ones(len(test), bool)), ("detectable", detectable)):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log10(f_pred[sel] / f_true[sel])
            r50 = np.log10(table["r50_pred_arcsec"].to_numpy()[sel] / table["r50_true_arcsec"].to_numpy()[sel])
        ok = np.isfinite(ratio) & (f_true[sel] > 0) & (f_pred[sel] > 0)
        rows.append(
            {
                "subset": subset,
                "n_galaxies": int(sel.sum()),
                "pixel_corr_median": float(np.nanmedian(corr[sel])) if np.isfinite(corr[sel]).any() else float("nan"),
                "flux_log_ratio_median_dex": float(np.median(ratio[ok])) if ok.any() else float("nan"),
                "flux_log_scatter_dex": robust_std(ratio[ok]),
                "n_flux": int(ok.sum()),
                "r50_log_ratio_median_dex": float(np.nanmedian(r50)) if np.isfinite(r50).any() else float("nan"),
                "r50_log_scatter_dex": robust_std(r50),
                "train_images_per_s": train_rate,
                "predict_images_per_s": rate,
            }
        )
    metrics = pd.DataFrame(rows)[METRIC_COLUMNS]
    n_bins = int(min(h, w) // 2)
    det = np.flatnonzero(detectable)
    k = min(int(params["n_examples"]), len(det))
    pick = det[np.argsort(-f_obs[det])][np.linspace(0, len(det) - 1, k).astype(int)] if k else np.array([], int)
    examples = {
        "ids": ids[pick],
        "inputs": data.inputs[test][pick],
        "input_bands": np.array(data.bands),
        "observed": obs[pick],
        "predicted": pred[pick],
        "profile_observed": radial_profiles(obs[det], n_bins, ivar[det] > 0) if len(det) else np.zeros((0, n_bins)),
        "profile_predicted": radial_profiles(pred[det], n_bins) if len(det) else np.zeros((0, n_bins)),
    }
    return metrics, table, examples


#: extra columns of ``halpha/diffusion/metrics.csv`` (after :data:`METRIC_COLUMNS`)
DRAW_METRIC_COLUMNS = ["n_draws", "flux_draw_spread_dex", "flux_coverage_1sigma", "pixel_coverage_1sigma"]
#: extra columns of ``halpha/diffusion/predictions.parquet`` (after :data:`PREDICTION_COLUMNS`)
DRAW_PREDICTION_COLUMNS = ["flux_draw_std_dex", "pixel_coverage_1sigma"]


def evaluate_draws(
    data: HalphaData,
    model: UNet,
    meta: Mapping[str, Any],
    params: Mapping[str, Any],
    truth: pd.DataFrame | None,
    failures: FailureLog,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The diffusion model on the held-out galaxies: metrics and per-galaxy table.

    The mean of each galaxy's draws is scored as the U-Net's prediction is
    (:func:`evaluate_maps`: same columns, ``flux_pred`` is the mean map's flux and
    ``predict_images_per_s`` counts draws); the draws add, per galaxy, the standard
    deviation of their aperture fluxes in dex (``flux_draw_std_dex``) and the fraction
    of valid aperture pixels whose observed value lies within one standard deviation
    of the mean map (the draws' spread and the pixel noise in quadrature:
    ``pixel_coverage_1sigma``), and per subset the median spread, the fraction of
    galaxies whose true flux lies within one spread of the mean's
    (``flux_coverage_1sigma``; 0.68 if the spread is calibrated) and the median pixel
    coverage.
    """
    test = _held_out(data)
    spec = params["diffusion"]
    t0 = time.perf_counter()
    draws = sample_maps(model, data.x[test], float(meta["data_scale"]), data.softening, spec, seed)
    rate = draws.shape[0] * len(test) / max(time.perf_counter() - t0, 1e-9)
    mean = draws.mean(0)
    metrics, table, _ = evaluate_maps(data, mean, params, truth, failures, float(meta["train_images_per_s"]), rate)
    aperture, _ = _aperture(data, params)
    f_draw = np.where(aperture, draws, 0).sum((2, 3)).astype(np.float64)  # (n_draws, N)
    log_f = np.log10(np.where(f_draw > 0, f_draw, np.nan))
    finite = np.isfinite(log_f)  # draws with a positive aperture flux
    n_pos = finite.sum(0)
    centre = np.where(finite, log_f, 0.0).sum(0) / np.maximum(n_pos, 1)
    dev = np.where(finite, log_f - centre, 0.0)
    spread = np.where(n_pos >= 2, np.sqrt((dev**2).sum(0) / np.maximum(n_pos - 1, 1)), np.nan)
    f_true, f_mean = table["flux_true"].to_numpy(np.float64), table["flux_pred"].to_numpy(np.float64)
    ok = (f_true > 0) & (f_mean > 0) & np.isfinite(spread)
    err = np.abs(np.log10(np.where(ok, f_mean, 1.0) / np.where(ok, f_true, 1.0)))
    covered = np.where(ok, err <= spread, np.nan)
    obs, ivar = data.flux[test, 0], data.ivar[test, 0]
    valid = (ivar > 0) & aperture[None]
    var = np.divide(1.0, ivar, out=np.zeros_like(ivar, dtype=np.float64), where=ivar > 0)
    sd = np.sqrt(draws.var(0, ddof=1).astype(np.float64) + var)
    inside = (np.abs(obs - mean) <= sd) & valid
    n_valid = valid.sum((1, 2))
    pixel_cov = np.where(n_valid > 0, inside.sum((1, 2)) / np.maximum(n_valid, 1), np.nan)
    table["flux_draw_std_dex"] = spread
    table["pixel_coverage_1sigma"] = pixel_cov
    detectable = table["detectable"].to_numpy(bool)
    extra = []
    for sel in (np.ones(len(test), bool), detectable):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an empty subset gives NaN, not a warning
            extra.append(
                {
                    "n_draws": int(draws.shape[0]),
                    "flux_draw_spread_dex": float(np.nanmedian(spread[sel])),
                    "flux_coverage_1sigma": float(np.nanmean(covered[sel])),
                    "pixel_coverage_1sigma": float(np.nanmedian(pixel_cov[sel])),
                }
            )
    metrics = pd.concat([metrics, pd.DataFrame(extra)], axis=1)[METRIC_COLUMNS + DRAW_METRIC_COLUMNS]
    return metrics, table[PREDICTION_COLUMNS + DRAW_PREDICTION_COLUMNS]
