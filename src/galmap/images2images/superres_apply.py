"""Run the trained super-resolution models on real FITS cutouts (``superres.apply``).

**Input.** A FITS file with one image HDU per band named ``<BAND>_BGSUB`` or ``<BAND>_FLUX`` (background
subtracted, header ``MAGZERO``: the AB zero point of one unit; 22.5, nanomaggies, when absent),
``<BAND>_PSF`` (the PSF on the same grid) and ``<BAND>_RMS`` (the noise sigma per pixel), every band on
the same TAN grid (``CD1_1``, degrees per pixel): the layout of ``shared/data/euclid_q1_cutouts``.
``source_hdus`` name the HDUs that stand for the source survey's bands, in its band order (DES
``DES_G, DES_R, DES_Z`` for DECaLS g, r, z: the same camera, DECam); ``target_hdus`` the target band
(``VIS``), used only to compare.

**As the pipeline sees them** (:func:`cutout_shards`). The source bands are converted to
nanomaggies, resampled (:func:`galmap.images2images.superres.bicubic_images`, flux per pixel conserved)
onto the source survey's grid (its pixel scale and stamp size; pixels beyond the cutout have no data),
their PSFs alike (normalised), and Gaussian noise is added so that each band's sky noise is the
source survey's (the median noise of its preprocessed training shards, :func:`galmap.preprocess.stamps.sky_sigma`;
a band already noisier is left as it is); the target band is put on the target survey's stamp (padded
without data). Both go through :func:`galmap.preprocess.stamps.preprocess_shard` (background,
segmentation, masks) with the config's settings, keep the real PSFs, and take the training shards'
``norm_softening`` so the networks see the scale they were trained on. The source's Sérsic fit
(:func:`galmap.structure.measure.fit_sersic_shard`) gives the Sérsic base.

**Limits.** One galaxy at a time, no colour terms between DES and DECaLS filters, and the added noise is
white (the resampled DES noise is correlated on the 0.1" grid).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galmap.core.io import Shard

log = logging.getLogger("galmap")

AB_NANOMAGGY = 22.5


def read_cutout(path: str | Path, hdus: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], float]:
    """The bands ``hdus`` of a FITS cutout: images (B, H, W) in nanomaggies per pixel, inverse variance
    (B, H, W; 0 where the noise is not positive or finite), PSFs (one (P, P) array each, normalised) and
    the pixel scale (arcsec). Raises ``ValueError`` naming the file and the HDU that is missing."""
    from astropy.io import fits

    path = Path(path)
    with fits.open(path) as fh:
        names = {h.name.upper() for h in fh}
        images, ivars, psfs, scale = [], [], [], None
        for band in hdus:
            b = band.upper()
            flux = next((f"{b}_{s}" for s in ("BGSUB", "FLUX") if f"{b}_{s}" in names), None)
            missing = [k for k in (flux, f"{b}_PSF", f"{b}_RMS") if k is None or k not in names]
            if missing:
                raise ValueError(f"cutout {path}: band {band!r} lacks HDU(s) {missing} (has {sorted(names)})")
            hdr = fh[flux].header
            zp = float(hdr.get("MAGZERO", AB_NANOMAGGY))
            to_nmgy = 10 ** ((AB_NANOMAGGY - zp) / 2.5)
            img = np.asarray(fh[flux].data, np.float64) * to_nmgy
            rms = np.asarray(fh[f"{b}_RMS"].data, np.float64) * to_nmgy
            good = np.isfinite(img) & np.isfinite(rms) & (rms > 0)
            images.append(np.where(good, img, 0.0))
            ivars.append(np.where(good, 1.0 / np.where(good, rms, 1.0) ** 2, 0.0))
            psf = np.nan_to_num(np.asarray(fh[f"{b}_PSF"].data, np.float64))
            psfs.append(psf / psf.sum())
            s = abs(float(hdr.get("CD1_1", hdr.get("CDELT1", np.nan)))) * 3600
            if scale is not None and not np.isclose(s, scale, rtol=1e-4):
                raise ValueError(f'cutout {path}: band {band!r} is on a {s:.4g}" grid, not {scale:.4g}" as the others')
            scale = s
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise ValueError(f"cutout {path}: the bands {list(hdus)} have different shapes {sorted(shapes)}")
    return np.stack(images).astype(np.float32), np.stack(ivars).astype(np.float32), psfs, float(scale)


def _resample(stack: np.ndarray, scale_in: float, size: int, scale_out: float) -> np.ndarray:
    from galmap.images2images.superres import bicubic_images

    return bicubic_images(stack[None].astype(np.float32), scale_in, size, scale_out)[0]


def _square(a: np.ndarray) -> np.ndarray:
    """The central square of (..., H, W) arrays."""
    h, w = a.shape[-2:]
    m = min(h, w)
    return a[..., (h - m) // 2 : (h - m) // 2 + m, (w - m) // 2 : (w - m) // 2 + m]


def to_survey_grid(
    images: np.ndarray,
    ivar: np.ndarray,
    psfs: Sequence[np.ndarray],
    scale_in: float,
    scale_out: float,
    size: int,
    psf_px: int,
    sky_sigma: Sequence[float] | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bands (B, H, W) of ``scale_in`` arcsec resampled onto ``size`` px of ``scale_out`` (flux per pixel
    conserved; no data beyond the cutout), their PSFs onto ``psf_px`` px of the same, and white noise
    added up to ``sky_sigma`` per band (None: none added). Returns images, inverse variance, PSFs."""
    images, ivar = _square(images), _square(ivar)
    n_in = images.shape[-1]
    area = (scale_out / scale_in) ** 2
    var_in = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), 0.0)
    out = _resample(images, scale_in, size, scale_out)
    # a resampled pixel sums ~area input pixels: their variances add (the bicubic kernel's correlations neglected)
    var = _resample(var_in, scale_in, size, scale_out) * 1.0
    cover = _resample((ivar > 0).astype(np.float32), scale_in, size, scale_out) / area
    inside = cover > 0.99  # pixels wholly inside the cutout
    half = (size - 1) / 2 * scale_out
    extent = (n_in / 2) * scale_in
    if half + scale_out / 2 > extent:
        log.info('cutout of %.1f" on a %.1f" stamp: pixels beyond it have no data', 2 * extent, 2 * half)
    new_ivar = np.zeros_like(out)
    for b in range(len(out)):
        v = var[b]
        if sky_sigma is not None:
            add = np.clip(float(sky_sigma[b]) ** 2 - v, 0, None)
            out[b] = out[b] + rng.normal(0, 1, v.shape) * np.sqrt(add)
            v = v + add
        new_ivar[b] = np.where(inside[b] & (v > 0), 1.0 / np.where(v > 0, v, 1.0), 0.0)
    out = np.where(new_ivar > 0, out, 0.0)
    p = np.stack([_resample(ps[None], scale_in, psf_px, scale_out)[0] for ps in psfs])
    p = np.clip(p, 0, None)
    p /= p.sum((1, 2), keepdims=True)
    return out.astype(np.float32), new_ivar.astype(np.float32), p.astype(np.float32)


def cutout_shards(
    path: str | Path,
    source_hdus: Sequence[str],
    target_hdus: Sequence[str],
    source_ref: Shard,
    target_ref: Shard,
    preprocess: Mapping[str, Any],
    seed: int,
    name: str | None = None,
) -> tuple[Shard, Shard]:
    """The cutout as preprocessed shards of the source and target surveys (see the module docstring).

    ``source_ref``/``target_ref``: a preprocessed training shard of each survey (attributes, stamp
    size, PSF size, noise and ``norm_softening`` are taken from them).
    """
    from galmap.preprocess.stamps import preprocess_shard, sky_sigma

    gid = name or Path(path).stem
    rng = np.random.default_rng(seed)
    shards = []
    for hdus, ref, add_noise in ((source_hdus, source_ref, True), (target_hdus, target_ref, False)):
        if len(hdus) != len(ref.bands):
            raise ValueError(
                f"cutout {path}: {len(hdus)} HDU band(s) {list(hdus)} for survey {ref.attrs['survey']!r}'s "
                f"{len(ref.bands)} band(s) {ref.bands}"
            )
        img, iv, psfs, scale = read_cutout(path, hdus)
        ref_psf = ref.extra.get("psf_profile", ref.extra.get("psf"))
        sigma = sky_sigma({}, ref.ivar) if add_noise else None
        out, ivar, psf = to_survey_grid(
            img, iv, psfs, scale, float(ref.attrs["pixscale_arcsec"]), ref.images.shape[-1], ref_psf.shape[-1],
            sigma, rng,
        )  # fmt: skip
        attrs = {k: v for k, v in ref.attrs.items() if k not in ("sky_sigma",)} | {"source": "real", "file": str(path)}
        raw = Shard(out[None], ivar[None], np.array([gid], dtype=object), attrs, {})
        pre = preprocess_shard(raw, preprocess, progress=False)
        pre.extra["psf"] = psf
        pre.extra["psf_profile"] = psf
        pre.attrs["norm_softening"] = list(np.asarray(ref.attrs["norm_softening"], float))
        shards.append(pre)
    return shards[0], shards[1]


#: columns of ``superres/apply/<name>.csv``: one row per version of the galaxy
APPLY_COLUMNS = ["id", "version", "re_arcsec", "sersic_n", "concentration", "asymmetry", "gini", "m20", "arm_m2"]


def apply_models(
    source: Shard,
    target: Shard,
    diffusion,
    regression,
    meta: Mapping[str, Any],
    params: Mapping[str, Any],
    structure_params: Mapping[str, Any],
    seed: int,
    work: str | Path,
) -> tuple[Any, dict[str, np.ndarray]]:
    """The trained models on preprocessed cutout shards (:func:`cutout_shards`).

    Returns the measures (a DataFrame, :data:`APPLY_COLUMNS`: the source survey's image measured directly,
    bicubic, regression, the mean of the draws, the target image) and the images of the figure (target grid).
    """
    import pandas as pd

    from galmap.core.io import write_shard
    from galmap.images2images.superres import load_pairs
    from galmap.images2images.superres_structure import calibrate_draws, combined_source, measure_structure
    from galmap.nn.diffusion import sample_draws
    from galmap.nn.image2image import predict_unet
    from galmap.structure.measure import fit_sersic_shard

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    write_shard(work / "source.h5", source)
    write_shard(work / "target.h5", target)
    sersic = fit_sersic_shard(source, structure_params) if params["sersic_base"] else None
    scales = {k: meta.get(k) for k in ("data_scale", "residual_scale", "base_band_weights")}
    data = load_pairs([str(work / "source.h5")], [str(work / "target.h5")], params, seed, None, sersic, scales)
    idx = np.arange(len(data.ids))
    n_draws = int(params["structure_draws"])
    raw = np.stack(
        [data.to_flux(d, idx) for d in sample_draws(diffusion, data.cond, 1, n_draws, int(params["sample_steps"]),
                                                    float(params["eta"]), seed)]
    )  # fmt: skip
    draws = calibrate_draws(raw, float(params.get("spread_scale", 1.0))).astype(np.float32)
    reg = data.to_flux(predict_unet(regression, data.cond), idx).astype(np.float32)
    w = np.asarray(meta.get("base_band_weights") or np.full(data.source_flux.shape[1], 1 / data.source_flux.shape[1]))
    cubic = np.einsum("b,nbhw->nhw", w, data.source_flux)[:, None].astype(np.float32)
    nat = data.native
    n_img, n_ivar, n_psf = combined_source(nat.images, nat.ivar, nat.extra["psf"], w)
    t_ivar, seg = data.target_ivar, data.target_segmap
    versions = {
        "source": measure_structure(n_img, n_ivar, nat.extra["segmap"], n_psf, data.source_pixscale, params),
        "bicubic": measure_structure(cubic, t_ivar, seg, data.target_psf, data.target_pixscale, params),
        "regression": measure_structure(reg, t_ivar, seg, data.target_psf, data.target_pixscale, params),
        "diffusion_mean": measure_structure(draws.mean(0), t_ivar, seg, data.target_psf, data.target_pixscale, params),
        "target": measure_structure(data.target_flux, t_ivar, seg, data.target_psf, data.target_pixscale, params),
    }
    rows = [m.assign(id=data.ids.astype(str), version=v) for v, m in versions.items()]
    table = pd.concat(rows, ignore_index=True).reindex(columns=APPLY_COLUMNS)
    images = {
        "source": nat.images[0], "bicubic": cubic[0, 0], "regression": reg[0, 0], "diffusion_mean": draws.mean(0)[0, 0],
        "diffusion_draw": draws[0, 0, 0], "target": data.target_flux[0, 0],
    }  # fmt: skip
    return table, images


def apply_figure(images: Mapping[str, np.ndarray], table, path: str | Path, title: str) -> None:
    """Panels of the source (its bands summed), bicubic, regression, a draw, the draws' mean and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["source", "bicubic", "regression", "diffusion_draw", "diffusion_mean", "target"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3 * len(keys), 3.4))
    ref = images["target"]
    soft = max(float(np.percentile(np.abs(ref), 50)), 1e-6)
    vmax = float(np.arcsinh(np.percentile(ref, 99.5) / soft))
    for ax, k in zip(axes, keys, strict=True):
        img = images[k]
        if img.ndim == 3:  # the source's bands summed, on its own (coarser) grid and noise
            img = img.sum(0)
            s_soft = max(float(np.percentile(np.abs(img), 50)), 1e-6)
            ax.imshow(np.arcsinh(img / s_soft), origin="lower", cmap="gray_r", vmin=0,
                      vmax=float(np.arcsinh(np.percentile(img, 99.5) / s_soft)))  # fmt: skip
        else:
            ax.imshow(np.arcsinh(img / soft), origin="lower", cmap="gray_r", vmin=0, vmax=vmax)
        row = table[
            table["version"] == ("source" if k == "source" else k if k != "diffusion_draw" else "diffusion_mean")
        ]
        label = k.replace("_", " ")
        if len(row) and k != "diffusion_draw":
            r = row.iloc[0]
            label += f'\nRe {r["re_arcsec"]:.2f}"  n {r["sersic_n"]:.1f}  C {r["concentration"]:.2f}'
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
