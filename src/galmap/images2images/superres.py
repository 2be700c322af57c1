"""DESI -> Euclid super-resolution: paired data, the diffusion model and its baselines, and their evaluation.

**Grids.** The target (``superres.target_survey``, Euclid VIS, 0.1"/px) is binned
``target_bin`` x ``target_bin`` (flux summed, variance summed; a binned pixel has
data only when all its pixels have) and the central ``target_px`` pixels are kept:
the default config compares on 48 px of 0.2" (9.6"), the paper config on the full
128 px of 0.1". The source (``superres.source_survey``, DECaLS g, r, z, 0.262"/px)
is resampled onto that grid with bicubic interpolation (:func:`bicubic_images`,
flux per pixel conserved; pixels without data count as 0) and is the networks'
conditioning input.

**Sérsic base.** With ``superres.sersic_base`` (the default) the networks do not
generate the target from nothing: each galaxy's Sérsic fit of the source survey (the
structure stage's ``sersic.parquet``: centre, n, Re, q, PA and one flux per band,
measured on the source image with the source PSF, so deconvolved) is re-rendered on the
target grid with the target PSF (:func:`sersic_base_images`), its flux in the target
band a linear combination of the band fluxes (least squares over the training
galaxies' pixels). This *base* is a deterministic function of the source image; it is
given to the networks as one more conditioning channel, and they learn the
**residual** target - base on the network scale (divided by ``residual_scale``, its
standard deviation over the training pixels). The networks spend their capacity on
what a Sérsic profile cannot describe (bulge and disc, bars, arms, clumps) instead of
on re-learning the galaxy's size and deconvolution. A galaxy without a usable fit gets
an empty base and a row in the failures table: a held-out one is generated from the
source alone, a training or validation one is left out (split ``"unused"``).

**Scales.** Both go through the asinh scale of :mod:`galmap.nn.inputs` with the
shard's ``norm_softening`` (converted to the new pixel: x ``target_bin`` for the
binned target's noise, x the pixel-area ratio for the resampled source); the
target is further divided by ``data_scale`` (the standard deviation of the training
targets' valid pixels, stored with the models) so that the diffusion works on
roughly unit-variance images.

**Models.** The diffusion model (:mod:`galmap.nn.diffusion`, a time-conditioned
:class:`galmap.nn.unet.UNet`) samples the target given the source; the regression
baseline is the same U-Net without the time input trained with a weighted mean
squared error (it predicts the conditional mean); the bicubic baseline resamples the
source bands (the same bicubic resampling) and combines them
linearly into the target band (least-squares coefficients over the training
galaxies' pixels).

**Loss weights.** Each target pixel carries its inverse variance on the network
scale (``weight``: the target's noise carried through the asinh scale, with a
fractional ``sys_error`` added in quadrature, as in the Hα stage; 0 where there is no
data). The loss weights of both networks are ``weight ** loss_weight_power``, scaled
to a mean of 1 over the training pixels: power 1 is the noise-aware χ², power 0 the plain
masked mean squared error on the asinh scale. The asinh scale compresses the bright
core, so an unweighted loss spends a small network's capacity on the outskirts and
its images come out with flattened cores, which a Sérsic fit turns into radii that
are 10-25 % too small; weighting by signal-to-noise puts the capacity where the
light and the information are. The weights do not change what a pixel's best value
is (its conditional mean), only how the networks' limited capacity is shared.

**Evaluation** (held-out galaxies): the effective radius of every version
measured with :class:`galmap.structure.sersic.SersicFitter` (the native source stamp with each
galaxy's own PSF where preprocessing attached one (``preprocess.psf: catalogue``), as the
structure stage fits it; the target, the draws, the regression, the bicubic and the Sérsic-base
images on the target grid with the target's PSF, binned alike, and the target's inverse
variance, so all versions are weighted the same), PSNR and SSIM against the target image, and the
calibration of the draws' spread (the fraction of pixels and of radii within one
standard deviation of the draws).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.stats import asinh_scale, from_asinh_scale, robust_std
from galmap.nn.diffusion import sample_draws
from galmap.nn.image2image import fit_unet, pixel_step, predict_unet, seeded_unet
from galmap.nn.inputs import assign_split, network_inputs, pair_surveys
from galmap.nn.losses import loss_weights
from galmap.nn.training import TrainSettings, data_digest
from galmap.nn.unet import UNet
from galmap.structure.flags import SERSIC_FLAGS, SERSIC_UNUSABLE
from galmap.structure.sersic import SersicFitter

log = logging.getLogger("galmap")

#: the versions of each held-out galaxy whose Re is measured (``sersic_base`` only with ``superres.sersic_base``)
METHODS = ("decals", "sersic_base", "bicubic", "regression", "diffusion", "euclid")
#: columns of ``superres/metrics.csv`` (one row per method; calibration columns only for diffusion)
METRIC_COLUMNS = [
    "method", "n_galaxies", "re_log_ratio_median", "re_bias_percent", "re_log_scatter_dex",
    "psnr_db", "ssim", "pixel_coverage_1sigma", "re_coverage_1sigma",
    "train_images_per_s", "sample_images_per_s",
]  # fmt: skip
#: columns of ``superres/re_compare.parquet`` (Re in arcsec, semi-major axis)
RE_COLUMNS = [
    "id", "re_decals_arcsec", "re_euclid_arcsec", "re_diffusion_arcsec", "re_diffusion_std_dex",
    "re_regression_arcsec", "re_bicubic_arcsec", "re_sersic_base_arcsec",
    "psnr_diffusion_db", "psnr_regression_db", "psnr_bicubic_db", "ssim_diffusion", "ssim_regression", "ssim_bicubic",
    "pixel_coverage_1sigma",
]  # fmt: skip


def bin_stamps(images: np.ndarray, ivar: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``factor`` x ``factor`` pixels of (N, B, H, W) stamps; a binned pixel has data only if all its pixels do."""
    if factor == 1:
        good = np.isfinite(images) & np.isfinite(ivar) & (ivar > 0)
        return np.where(good, images, 0).astype(np.float32), np.where(good, ivar, 0).astype(np.float32)
    n, b, h, w = images.shape
    h2, w2 = h // factor, w // factor
    img = images[..., : h2 * factor, : w2 * factor]
    iv = ivar[..., : h2 * factor, : w2 * factor]
    good = np.isfinite(img) & np.isfinite(iv) & (iv > 0)
    var = np.divide(1.0, iv, out=np.zeros(iv.shape, np.float32), where=good)
    shape = (n, b, h2, factor, w2, factor)
    flux = np.where(good, img, np.float32(0)).reshape(shape).sum((3, 5))
    var_b = var.reshape(shape).sum((3, 5))
    ok = good.reshape(shape).all((3, 5))
    out_ivar = np.divide(1.0, var_b, out=np.zeros(var_b.shape, np.float32), where=ok & (var_b > 0))
    return np.where(ok, flux, 0).astype(np.float32), out_ivar.astype(np.float32)


def bin_psf(psf: np.ndarray, factor: int) -> np.ndarray:
    """A (B, P, P) PSF binned ``factor`` x ``factor`` (odd output size, normalised to 1).

    A sub-pixel offset of the binned PSF's centre only shifts the fitted galaxy centre.
    """
    if factor == 1:
        return psf / psf.sum((1, 2), keepdims=True)
    p = psf.shape[-1]
    m = p // factor
    if m % 2 == 0:
        m -= 1
    cut = psf[:, : m * factor, : m * factor]
    out = cut.reshape(psf.shape[0], m, factor, m, factor).sum((2, 4))
    return out / out.sum((1, 2), keepdims=True)


def target_grid(images: np.ndarray, ivar: np.ndarray, factor: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, B, H, W) target stamps on the compared grid: binned ``factor`` x ``factor`` (:func:`bin_stamps`), the
    central ``size`` pixels (cropped first: the binned crop is centred alike when margins are multiples of the bin)."""
    full = images.shape[-1] // factor
    if size > full:
        raise ValueError(f"superres.target_px {size} is larger than the binned target stamp ({full} px)")
    margin = ((full - size) // 2) * factor
    img, iv = bin_stamps(images[..., margin:, margin:], ivar[..., margin:, margin:], factor)
    return img[..., :size, :size], iv[..., :size, :size]


def bin_segmap(segmap: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W) segment labels binned ``factor`` x ``factor``: 1 where any pixel is the galaxy's (label 1),
    else 2 where any is a neighbour's (label > 1), else 0."""
    if factor == 1:
        return np.where(segmap == 1, 1, np.where(segmap > 1, 2, 0)).astype(np.int32)
    n, h, w = segmap.shape
    h2, w2 = h // factor, w // factor
    blocks = segmap[:, : h2 * factor, : w2 * factor].reshape(n, h2, factor, w2, factor)
    own, other = (blocks == 1).any((2, 4)), (blocks > 1).any((2, 4))
    return np.where(own, 1, np.where(other, 2, 0)).astype(np.int32)


def _stack_extra(shards: Sequence[Shard], rows: Sequence[tuple[int, int]], key: str) -> np.ndarray | None:
    """A per-galaxy dataset of the paired shards (``rows``: (shard, row)), stacked; None when a shard lacks it."""
    if not rows or any(key not in s.extra for s in shards):
        return None
    return np.stack([shards[k].extra[key][i] for k, i in rows])


def crop_centre(a: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` pixels of (..., H, W) arrays."""
    h, w = a.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"cannot crop {size} px from stamps of {h} x {w} px")
    y0, x0 = (h - size) // 2, (w - size) // 2
    return a[..., y0 : y0 + size, x0 : x0 + size]


@dataclass
class SuperresData:
    """Paired source/target galaxies on the target grid.

    ``cond`` (N, C, H, W) is the networks' input: the normalised source bands and, with a
    Sérsic base, the base as one more channel. ``target`` (N, 1, H, W) is what the networks
    learn: the normalised target divided by ``data_scale``, minus ``base`` (the Sérsic base
    on that scale, zeros without one), divided by ``residual_scale``; ``weight`` is its
    inverse variance (0 on pixels without data; ``mask`` = the pixels with data).
    ``target_flux``/``target_ivar`` are the target in its flux unit (nanomaggies per
    pixel), ``source_flux`` the resampled source (nanomaggies per target pixel),
    ``base_flux`` the Sérsic base (nanomaggies per target pixel), ``native`` the source's
    native stamps (for its own Re fit).
    """

    ids: np.ndarray
    split: np.ndarray
    cond: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    target_flux: np.ndarray
    target_ivar: np.ndarray
    source_flux: np.ndarray
    native: Shard
    target_softening: float
    data_scale: float
    target_pixscale: float
    source_pixscale: float
    target_psf: np.ndarray
    base: np.ndarray
    base_flux: np.ndarray
    residual_scale: float = 1.0
    base_band_weights: np.ndarray | None = None
    target_segmap: np.ndarray | None = None  # (N, H, W) labels on the target grid: 1 the galaxy, >1 neighbours

    @property
    def mask(self) -> torch.Tensor:
        """The target pixels with data (N, 1, H, W), bool."""
        return self.weight > 0

    @property
    def scales(self) -> dict[str, Any]:
        """What a trained model must be evaluated with (stored in its metadata; see :func:`load_pairs`)."""
        weights = None if self.base_band_weights is None else [float(w) for w in self.base_band_weights]
        return {"data_scale": self.data_scale, "residual_scale": self.residual_scale, "base_band_weights": weights}

    def to_flux(self, x: torch.Tensor | np.ndarray, index: np.ndarray) -> np.ndarray:
        """Network outputs (N, 1, H, W) of the galaxies ``index`` back to target images in flux per pixel."""
        x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
        return to_flux(self.base[index] + self.residual_scale * x, self.target_softening, self.data_scale)


def sersic_base_images(
    fits: pd.DataFrame,
    ids: Sequence[str],
    bands: Sequence[str],
    source_pixscale: float,
    source_px: int,
    size: int,
    target_pixscale: float,
    target_psf: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Each galaxy's source Sérsic fit rendered on the target grid with the target PSF.

    ``fits`` holds the structure stage's rows (``id, band, n, re_arcsec, q, pa_deg, x0_px,
    y0_px, flux, flag``; the shape shared by the bands), measured on centred
    ``source_px``-pixel stamps of ``source_pixscale`` arcsec; the target grid is ``size``
    pixels of ``target_pixscale`` arcsec with the same centre. Returns unit-flux images
    (N, 1, size, size), the fit's flux per band (N, B; nanomaggies) and, for the galaxies
    without a usable fit (zero image, zero fluxes), the reason.
    """
    from galmap.structure.sersic import SersicModel

    n, nb = len(ids), len(bands)
    unit = np.zeros((n, 1, size, size), np.float32)
    shape_cols = ["x0_px", "y0_px", "n", "re_arcsec", "q", "pa_deg"]
    rows = fits.drop_duplicates(["id", "band"]).set_index(["id", "band"])
    rows = rows.reindex(pd.MultiIndex.from_product([[str(g) for g in ids], list(bands)]))
    missing = rows["flag"].isna().to_numpy().reshape(n, nb).any(1)
    flag = np.bitwise_or.reduce(rows["flag"].fillna(0).to_numpy(np.int64).reshape(n, nb), axis=1)
    shape = rows[shape_cols].to_numpy(np.float64).reshape(n, nb, -1)[:, 0]
    flux = rows["flux"].to_numpy(np.float64).reshape(n, nb).copy()
    ok = ~missing & ((flag & SERSIC_UNUSABLE) == 0) & np.isfinite(shape).all(1) & np.isfinite(flux).all(1)
    ok &= np.nan_to_num(shape[:, 3]) > 0
    why = {
        str(g): "no Sérsic fit of the source in the structure table"
        if missing[i]
        else f"the Sérsic fit of the source is not usable (flag {flag[i]})"
        for i, g in enumerate(ids)
        if not ok[i]
    }
    flux[~ok] = 0.0
    if ok.any():
        k = source_pixscale / target_pixscale
        c_s, c_t = (source_px - 1) / 2, (size - 1) / 2
        model = SersicModel((size, size), target_psf, oversample=2, dtype=torch.float32)
        p = torch.as_tensor(shape[ok], dtype=torch.float32)
        todo = np.flatnonzero(ok)
        with torch.no_grad():
            for start in range(0, len(p), 256):
                b = p[start : start + 256]
                img = model.render(
                    c_t + (b[:, 0] - c_s) * k, c_t + (b[:, 1] - c_s) * k, b[:, 2], b[:, 3] / target_pixscale,
                    b[:, 4], torch.deg2rad(b[:, 5]), torch.ones((len(b), 1)),
                )  # fmt: skip
                unit[todo[start : start + 256]] = img.numpy()
    return unit, flux, why


def load_pairs(
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    failures: FailureLog | None = None,
    sersic: pd.DataFrame | None = None,
    scales: Mapping[str, Any] | None = None,
) -> SuperresData:
    """Read and pair the preprocessed shards of both surveys (see the module docstring).

    A galaxy missing from either survey, or without valid pixels in either, is left out with
    a row in ``failures``. ``sersic`` holds the source survey's Sérsic fits (the structure
    stage's table), needed with ``params["sersic_base"]``. ``scales`` (a trained model's
    :attr:`SuperresData.scales`) override the scales measured on the training galaxies, so
    that a model is evaluated on the scales it was trained with.
    """
    extra = ("flags", "psf", "psf_profile", "segmap", "psf_fwhm")
    pairs = pair_surveys(source_paths, target_paths, "superres", extra, failures)
    src, tgt, ids = pairs.source, pairs.target, pairs.ids
    bin_, size = int(params["target_bin"]), int(params["target_px"])
    t_attrs, s_attrs = tgt[0].attrs, src[0].attrs
    t_scale = float(t_attrs["pixscale_arcsec"]) * bin_
    s_scale = float(s_attrs["pixscale_arcsec"])
    s_img, s_ivar = pairs.stamps("source")
    t_img, t_ivar = pairs.stamps("target")
    t_img, t_ivar = target_grid(t_img, t_ivar, bin_, size)
    t_seg = _stack_extra(pairs.target, pairs.target_rows, "segmap")
    if t_seg is not None:
        margin = ((t_seg.shape[-1] // bin_ - size) // 2) * bin_
        t_seg = bin_segmap(t_seg[..., margin:, margin:], bin_)[..., :size, :size]
    t_soft = float(np.asarray(t_attrs["norm_softening"])[0]) * bin_
    x_t, w_t = network_inputs(t_img, t_ivar, [t_soft], float(params["sys_error"]))
    mask = w_t > 0
    split = assign_split(ids, seed, float(params["val_fraction"]), float(params["test_fraction"]))
    train_px = (split == "train")[:, None, None, None] & mask
    data_scale = None if scales is None else float(scales["data_scale"])
    if data_scale is None:
        train_pix = x_t[train_px]
        data_scale = float(np.std(train_pix)) if train_pix.size > 1 else 1.0
        data_scale = data_scale if data_scale > 0 else 1.0
    good = np.isfinite(s_img) & np.isfinite(s_ivar) & (s_ivar > 0)
    r_img = bicubic_images(np.where(good, s_img, 0), s_scale, size, t_scale)
    area = (t_scale / s_scale) ** 2
    s_soft = np.asarray(s_attrs["norm_softening"], np.float32)[None, :, None, None] * np.float32(area)
    x_s = asinh_scale(r_img, s_soft)
    psf = tgt[0].extra.get("psf_profile", tgt[0].extra.get("psf"))
    t_psf = bin_psf(np.asarray(psf, np.float64), bin_)
    native = Shard(
        images=s_img, ivar=s_ivar, ids=np.asarray(ids, dtype=object), attrs=dict(s_attrs),
        extra={"psf": src[0].extra.get("psf_profile", src[0].extra.get("psf"))}
        | ({} if (seg := _stack_extra(pairs.source, pairs.source_rows, "segmap")) is None else {"segmap": seg})
        | ({} if (fw := _stack_extra(pairs.source, pairs.source_rows, "psf_fwhm")) is None else {"psf_fwhm": fw}),
    )  # fmt: skip
    x_t = x_t / np.float32(data_scale)
    w_t = w_t * np.float32(data_scale) ** 2
    base_flux = np.zeros_like(t_img)
    base = np.zeros_like(x_t)
    residual_scale, weights = 1.0, None
    if params["sersic_base"]:
        if sersic is None:
            raise ValueError(
                "superres.sersic_base needs the source survey's Sérsic fits (results/structure/sersic.parquet)"
            )
        bands = list(s_attrs["bands"])
        unit, band_flux, why = sersic_base_images(sersic, ids, bands, s_scale, s_img.shape[-1], size, t_scale, t_psf)
        for i, g in enumerate(map(str, ids)):
            if g not in why:
                continue
            held_out = split[i] == "test"
            if failures is not None:
                use = "generated without a Sérsic base" if held_out else "left out of the training"
                failures.add(g, f"superres: {why[g]}; {use}")
            if not held_out:  # its residual would be the whole image, unlike every other galaxy's
                split[i] = "unused"
        train_px = (split == "train")[:, None, None, None] & mask
        if scales is not None and scales.get("base_band_weights") is not None:
            weights = np.asarray(scales["base_band_weights"], np.float64)
        else:
            fit = split == "train"
            flux_images = unit[fit] * band_flux[fit][:, :, None, None]  # each band's flux in the base's shape
            weights = fit_band_weights(flux_images, t_img[fit], mask[fit], max_pixels=None)
        base_flux = (unit * (band_flux @ weights)[:, None, None, None]).astype(np.float32)
        base = (np.arcsinh(base_flux / t_soft) / data_scale).astype(np.float32)
        if scales is not None and scales.get("residual_scale") is not None:
            residual_scale = float(scales["residual_scale"])
        else:
            res = (x_t - base)[train_px]
            sd = float(np.std(res)) if res.size > 1 else 0.0
            residual_scale = sd if sd > 0 else 1.0
        x_s = np.concatenate([x_s, base], axis=1)
    return SuperresData(
        ids=np.asarray(ids, dtype=object),
        split=split,
        cond=torch.from_numpy(x_s),
        target=torch.from_numpy((x_t - base) / np.float32(residual_scale)),
        weight=torch.from_numpy(w_t * np.float32(residual_scale) ** 2),
        target_flux=t_img,
        target_ivar=t_ivar,
        source_flux=r_img,
        native=native,
        target_softening=t_soft,
        data_scale=data_scale,
        target_pixscale=t_scale,
        source_pixscale=s_scale,
        target_psf=t_psf,
        base=base,
        base_flux=base_flux,
        residual_scale=residual_scale,
        base_band_weights=weights,
        target_segmap=t_seg,
    )


def to_flux(x: torch.Tensor | np.ndarray, softening: float, data_scale: float) -> np.ndarray:
    """Network-scale target images back to flux per pixel (the target's unit)."""
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, np.float64)
    return from_asinh_scale(x * data_scale, softening)


def train_model(
    kind: str, data: SuperresData, params: Mapping[str, Any], seed: int, device: torch.device, checkpoint=None
) -> tuple[UNet, pd.DataFrame, dict[str, Any]]:
    """Train the diffusion model or the regression baseline; return it, its history and its metadata."""
    model = seeded_unet(seed, device, data.cond.shape[1], params["channels"], kind)
    weights = loss_weights(data.weight, data.split, float(params["loss_weight_power"]))
    epochs = int(params[f"{kind}_epochs"])
    settings = TrainSettings(
        max_epochs=epochs,
        patience=epochs,
        learning_rate=float(params["learning_rate"]),
        seed=seed,
        keep="last" if kind == "diffusion" else "best",
        bf16=bool(params.get("bf16", False)),
        ema_decay=float(params.get("ema_decay", 0.0)) if kind == "diffusion" else 0.0,
    )
    model, history, meta = fit_unet(
        model, pixel_step(kind, device), data.split, (data.cond, data.target, weights), int(params["batch_size"]),
        settings, checkpoint,
        f"{kind}:{dict(params)}:{seed}:" + data_digest(data.cond, data.target, weights, data.split),
        f"superres {kind}",
    )  # fmt: skip
    return model, history, meta | {"kind": kind, **data.scales, "sersic_base": data.base_band_weights is not None}


def bicubic_images(native: np.ndarray, scale_in: float, size: int, scale_out: float) -> np.ndarray:
    """Bicubic resampling of centred (N, B, n, n) stamps to ``size`` px of ``scale_out`` (flux per output pixel)."""
    x = torch.as_tensor(np.nan_to_num(native), dtype=torch.float32)
    n_in = x.shape[-1]
    pos = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * scale_out / scale_in + (n_in - 1) / 2
    g = (2 * pos + 1) / n_in - 1  # align_corners=False normalised coordinates
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None].expand(x.shape[0], -1, -1, -1)
    out = F.grid_sample(x, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
    return (out * (scale_out / scale_in) ** 2).numpy()


def fit_band_weights(
    source: np.ndarray, target: np.ndarray, mask: np.ndarray, max_pixels: int | None = 200_000
) -> np.ndarray:
    """Least-squares weights (B,) with ``sum_b w_b source_b ~ target`` over masked pixels.

    ``max_pixels``: a random subset of that many pixels (seeded) is fitted; ``None``: all of them.
    """
    a = source.transpose(1, 0, 2, 3).reshape(source.shape[1], -1).T
    y = target[:, 0].reshape(-1)
    m = mask[:, 0].reshape(-1)
    a, y = a[m], y[m]
    if len(y) == 0:
        raise ValueError("superres: no training pixel to fit the band weights of the target band")
    if max_pixels is not None and len(y) > max_pixels:
        sel = np.random.default_rng(0).choice(len(y), max_pixels, replace=False)
        a, y = a[sel], y[sel]
    return np.linalg.lstsq(a.astype(np.float64), y.astype(np.float64), rcond=None)[0]


def psnr(reference: np.ndarray, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """PSNR (dB) per galaxy of (N, 1, H, W) images over valid pixels; the peak is the reference's max - min.

    All galaxies at once: the squared differences (in the images' dtype) are summed over each
    galaxy's valid pixels in float64. NaN for a galaxy without valid pixels, a flat reference or
    a perfect image.
    """
    n = len(reference)
    ref, img = np.asarray(reference).reshape(n, -1), np.asarray(image).reshape(n, -1)
    ok = np.asarray(valid, bool).reshape(n, -1)
    count = ok.sum(1)
    sq = np.where(ok, (ref - img) ** 2, 0).sum(1, dtype=np.float64)
    peak = np.where(ok, ref, -np.inf).max(1, initial=-np.inf) - np.where(ok, ref, np.inf).min(1, initial=np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = sq / count
        out = 10 * np.log10(peak.astype(np.float64) ** 2 / mse)
    return np.where((count > 0) & (mse > 0) & (peak > 0), out, np.nan)


def _ssim(reference: np.ndarray, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from galmap.nn.imagemetrics import ssim

    return ssim(torch.as_tensor(reference), torch.as_tensor(image), torch.as_tensor(valid))[:, 0].numpy()


#: the Sérsic fits' convergence (an accepted step lowering chi2 by less than this, absolute): 0.1, not the
#: fitter's 0.01. The compared images are deep (Euclid's noise), where the last steps to 0.01 cost a quarter of
#: the fit and move nothing measured: on 224 validation images (Euclid and diffusion draws) Re moved by
#: < 5e-5 dex for 90 % (at most 0.002 dex) and n by < 5e-4 (at most 0.005); docs/superres.md
FIT_TOL = 0.1


def fit_sersic(
    images: np.ndarray,
    ivar: np.ndarray,
    psf: np.ndarray,
    pixscale: float,
    params: Mapping[str, Any],
    galaxy_psf: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sérsic half-light semi-major axes (arcsec), indices and fit flags of (N, B, H, W) stamps (sky fitted).

    ``psf`` (B, P, P): the images' PSF; ``galaxy_psf`` (N, B, P, P): each galaxy's own PSF in its place
    (:func:`galmap.core.surveys.galaxy_psfs`: the catalogue's PSF size with ``preprocess.psf: catalogue``),
    as the structure stage fits the same stamps.
    """
    h, w = images.shape[-2:]
    fitter = SersicFitter(psf, (h, w), fit_sky=True, max_iter=int(params["fit_max_iter"]), tol=FIT_TOL, device="cpu")
    re, n, flag = np.full(len(images), np.nan), np.full(len(images), np.nan), np.zeros(len(images), np.int64)
    bs = 128
    for start in range(0, len(images), bs):
        own = None if galaxy_psf is None else galaxy_psf[start : start + bs]
        fit = fitter.fit(images[start : start + bs], ivar[start : start + bs], psf=own)
        re[start : start + bs] = fit.re_px * pixscale
        n[start : start + bs] = fit.n
        flag[start : start + bs] = fit.flag
    return re, n, flag


def fit_re(
    images: np.ndarray,
    ivar: np.ndarray,
    psf: np.ndarray,
    pixscale: float,
    params: Mapping[str, Any],
    galaxy_psf: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sérsic half-light semi-major axes (arcsec) and fit flags of (N, B, H, W) stamps (:func:`fit_sersic`)."""
    re, _, flag = fit_sersic(images, ivar, psf, pixscale, params, galaxy_psf)
    return re, flag


def source_psfs(native: Shard, index: np.ndarray) -> np.ndarray | None:
    """The PSFs (len(index), B, P, P) the source stamps ``index`` are fitted with: each galaxy's own
    (:func:`galmap.core.surveys.galaxy_psfs`, the structure stage's), or None: the survey's nominal PSF."""
    from galmap.core.surveys import galaxy_psfs

    return galaxy_psfs(native, index, np.shape(native.extra["psf"])[-1])


def _bad_fit(re: np.ndarray, flag: np.ndarray) -> np.ndarray:
    return ~np.isfinite(re) | (re <= 0) | ((flag & (SERSIC_FLAGS["no_data"] | SERSIC_FLAGS["at_bound"])) > 0)


def evaluate(
    data: SuperresData,
    diffusion: UNet,
    regression: UNet,
    params: Mapping[str, Any],
    seed: int,
    failures: FailureLog,
    throughput: Mapping[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Metrics per method, the per-galaxy Re table and example images of the held-out galaxies."""
    test = np.flatnonzero(data.split == "test")
    if len(test) == 0:
        raise ValueError("superres: no held-out galaxy (raise superres.test_fraction)")
    ids = data.ids[test]
    cond = data.cond[test]
    valid = data.mask[test].numpy()
    truth = data.target_flux[test]
    t_ivar = data.target_ivar[test]
    n_draws, steps = int(params["n_draws"]), int(params["sample_steps"])
    t0 = time.perf_counter()
    draws = sample_draws(diffusion, cond, 1, n_draws, steps, float(params["eta"]), seed)
    sample_rate = n_draws * len(test) / max(time.perf_counter() - t0, 1e-9)
    t0 = time.perf_counter()
    reg = predict_unet(regression, cond)
    reg_rate = len(test) / max(time.perf_counter() - t0, 1e-9)
    draws_flux = np.stack([data.to_flux(d, test) for d in draws])
    reg_flux = data.to_flux(reg, test)
    with_base = data.base_band_weights is not None
    train_idx = data.split == "train"
    weights = fit_band_weights(data.source_flux[train_idx], data.target_flux[train_idx], data.mask[train_idx].numpy())
    native = data.native
    cubic = np.einsum("b,nbhw->nhw", weights, data.source_flux[test])[:, None].astype(np.float32)
    # effective radii
    psf, pix = data.target_psf, data.target_pixscale
    re = {
        "euclid": fit_re(truth, t_ivar, psf, pix, params),
        "regression": fit_re(reg_flux, t_ivar, psf, pix, params),
        "bicubic": fit_re(cubic, t_ivar, psf, pix, params),
        "decals": fit_re(
            native.images[test],
            native.ivar[test],
            native.extra["psf"],
            data.source_pixscale,
            params,
            source_psfs(native, test),
        ),
    }
    if with_base:
        re["sersic_base"] = fit_re(data.base_flux[test], t_ivar, psf, pix, params)
    d_re = np.stack([fit_re(d, t_ivar, psf, pix, params) for d in draws_flux])  # (2, ...) per draw
    draw_re, draw_flag = d_re[:, 0], d_re[:, 1].astype(np.int64)
    draw_ok = ~_bad_fit(draw_re, draw_flag)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_draws = np.where(draw_ok, np.log10(np.where(draw_ok, draw_re, 1.0)), np.nan)
        med = np.nanmedian(log_draws, axis=0) if draw_ok.any() else np.full(len(test), np.nan)
        std = np.nanstd(log_draws, axis=0)
    enough = draw_ok.sum(0) >= max(1, (n_draws + 1) // 2)
    re["diffusion"] = (np.where(enough, 10**med, np.nan), np.where(enough, 0, SERSIC_FLAGS["no_data"]))
    bad = {m: _bad_fit(*re[m]) for m in re}
    for i, g in enumerate(ids):
        for m in ("euclid", "decals", "regression", "bicubic", "sersic_base"):
            if m in bad and bad[m][i]:
                failures.add(
                    g,
                    f"superres: the Sérsic fit of the {m} image failed (flag {int(re[m][1][i])}, Re {re[m][0][i]:.3g})",
                )
        if bad["diffusion"][i]:
            failures.add(
                g,
                f"superres: the Sérsic fit failed on {n_draws - int(draw_ok[:, i].sum())} of {n_draws} diffusion draws",
            )
    # image metrics (flux units) and the calibration of the draws
    mean_draw, std_draw = draws_flux.mean(0), draws_flux.std(0)
    inside = (np.abs(truth - mean_draw) <= std_draw) & valid
    with np.errstate(divide="ignore", invalid="ignore"):  # a galaxy without valid pixels: NaN
        coverage = inside.sum((1, 2, 3)) / valid.sum((1, 2, 3))
    p = {
        "diffusion": np.nanmean([psnr(truth, d, valid) for d in draws_flux], axis=0),
        "regression": psnr(truth, reg_flux, valid),
        "bicubic": psnr(truth, cubic, valid),
    }
    s = {
        "diffusion": np.nanmean([_ssim(truth, d, valid) for d in draws_flux], axis=0),
        "regression": _ssim(truth, reg_flux, valid),
        "bicubic": _ssim(truth, cubic, valid),
    }
    table = pd.DataFrame(
        {
            "id": ids.astype(str),
            "re_decals_arcsec": np.where(bad["decals"], np.nan, re["decals"][0]),
            "re_euclid_arcsec": np.where(bad["euclid"], np.nan, re["euclid"][0]),
            "re_diffusion_arcsec": re["diffusion"][0],
            "re_diffusion_std_dex": np.where(enough, std, np.nan),
            "re_regression_arcsec": np.where(bad["regression"], np.nan, re["regression"][0]),
            "re_bicubic_arcsec": np.where(bad["bicubic"], np.nan, re["bicubic"][0]),
            "re_sersic_base_arcsec": np.where(bad["sersic_base"], np.nan, re["sersic_base"][0])
            if with_base
            else np.full(len(test), np.nan),
            "psnr_diffusion_db": p["diffusion"],
            "psnr_regression_db": p["regression"],
            "psnr_bicubic_db": p["bicubic"],
            "ssim_diffusion": s["diffusion"],
            "ssim_regression": s["regression"],
            "ssim_bicubic": s["bicubic"],
            "pixel_coverage_1sigma": coverage,
        }
    )[RE_COLUMNS]
    rows = []
    ref = np.log10(table["re_euclid_arcsec"].to_numpy())
    for m in METHODS:
        if m == "sersic_base" and not with_base:
            continue
        ratio = np.log10(table[f"re_{m}_arcsec"].to_numpy()) - ref
        ok = np.isfinite(ratio)
        med_ratio = float(np.median(ratio[ok])) if ok.any() else float("nan")
        row = {
            "method": m,
            "n_galaxies": int(ok.sum()),
            "re_log_ratio_median": med_ratio,
            "re_bias_percent": 100 * (10**med_ratio - 1),
            "re_log_scatter_dex": robust_std(ratio[ok]),
            "psnr_db": float(np.nanmedian(p[m])) if m in p else float("nan"),
            "ssim": float(np.nanmedian(s[m])) if m in s else float("nan"),
            "pixel_coverage_1sigma": float(np.nanmean(coverage)) if m == "diffusion" else float("nan"),
            "re_coverage_1sigma": float("nan"),
            "train_images_per_s": float(throughput.get(m, float("nan"))),
            "sample_images_per_s": {"diffusion": sample_rate, "regression": reg_rate}.get(m, float("nan")),
        }
        if m == "diffusion":
            z = ratio / table["re_diffusion_std_dex"].to_numpy()
            okz = np.isfinite(z)
            row["re_coverage_1sigma"] = float(np.mean(np.abs(z[okz]) <= 1)) if okz.any() else float("nan")
        rows.append(row)
    metrics = pd.DataFrame(rows)[METRIC_COLUMNS]
    k = min(int(params["n_examples"]), len(test))
    order = np.argsort(-np.nan_to_num(table["re_euclid_arcsec"].to_numpy(), nan=-1))
    pick = np.sort(order[np.linspace(0, max(len(order) // 2, 1) - 1, k).astype(int)]) if k else np.array([], int)
    examples = {
        "ids": ids[pick].astype(str),
        "source": native.images[test][pick],
        "source_bands": np.array(native.bands),
        "draws": draws_flux[:, pick],
        "regression": reg_flux[pick],
        "bicubic": cubic[pick],
        "truth": truth[pick],
        "sky_sigma": np.array([1.0 / np.sqrt(np.median(t_ivar[t_ivar > 0]))]) if (t_ivar > 0).any() else np.ones(1),
    }
    if with_base:
        examples["sersic_base"] = data.base_flux[test][pick]
    return metrics, table, examples
