"""Preprocessing of image shards: bad pixels, segmentation, masks, background, PSF, normalisation.

For every galaxy of a shard (:func:`preprocess_shard`):

1. pixels that are not finite or have a negative/non-finite inverse variance get
   ``ivar = 0`` (they carry no information);
2. a detection image (the inverse-variance weighted sum of the bands, in units of
   its noise) is smoothed and segmented with :func:`photutils.segmentation.detect_sources`;
   the segment under the stamp centre is the galaxy (``segmap``), every other
   segment, grown by ``mask_dilate_px``, is a neighbour (``mask``);
3. the background of each band is the sigma-clipped median of the pixels outside
   all sources, and is subtracted (``background`` records it);
4. neighbour pixels get ``ivar = 0`` (their values are kept, so image-based networks
   see the sky as volunteers did; fitters ignore them through ``ivar``); bad pixels
   are set to 0 with ``ivar = 0``.

The output shard adds ``segmap`` (bool, N x H x W), ``mask`` (bool), ``psf``
(bands x P x P, the survey's nominal effective, pixel-integrated PSF summing to 1), ``psf_profile``
(the PSF profile sampled at pixel centres, for pixel-integrated models), ``psf_fwhm`` (N x bands,
arcsec: each galaxy's PSF FWHM from the catalogue, with ``psf = "catalogue"``: :func:`galaxy_psf_fwhm`), ``background``
(N x bands, image units) and ``flags`` (N, bitmask: see :data:`galmap.preprocess.flags.FLAGS`), and records
the network normalisation in its attributes: ``norm = "asinh"`` with one
``norm_softening`` per band, applied by :func:`normalise` and inverted by
:func:`denormalise`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from photutils.segmentation import deblend_sources, detect_sources
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import ndimage
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.stats import asinh_scale, from_asinh_scale
from galmap.core.surveys import moffat_images, nominal_psf_beta
from galmap.preprocess.flags import FLAGS
from galmap.preprocess.settings import survey_params

log = logging.getLogger("galmap")


#: Bands that are emission-line maps: an empty segmentation there is a physical
#: non-detection (no star formation), flagged but not a failure.
LINE_BANDS = {"Ha"}

DEFAULTS = {
    "detect_nsigma": 2.0,
    "detect_npixels": 10,
    "smooth_fwhm_px": 2.0,
    "deblend_contrast": 0.005,
    "mask_dilate_px": 2,
    "psf_stamp_px": 51,
    "norm_softening": 3.0,
    "psf": "catalogue",
}

#: The PSF models preprocessing can attach (``preprocess.psf``): each galaxy's from the catalogue's
#: PSF size (a Moffat of the survey's nominal β), or the survey's nominal one.
PSF_SOURCES = ("catalogue", "nominal")


def psf_images(attrs: Mapping[str, Any], size_px: int, pixel: bool = True) -> np.ndarray:
    """The survey's nominal PSF images (bands, size, size) on the survey grid, each summing to 1.

    Built from the shard's ``psf_fwhm_arcsec`` (arcsec) with a Moffat of ``psf_beta``
    (:func:`galmap.core.surveys.nominal_psf_beta`) on the ``pixscale_arcsec`` grid: the survey's documented seeing
    (``surveys.<name>`` in the config, for the mock and for real cutouts alike), not the
    PSF each galaxy was observed through. The mock varies that PSF from galaxy to galaxy
    (``mock.systematics.psf``; the truth table keeps it), so, as with real data, the
    pipeline's PSF is a model with errors. ``pixel=True`` gives the effective
    (pixel-integrated) PSF, the kernel for models sampled at pixel centres;
    ``pixel=False`` the PSF profile sampled at pixel centres, the kernel for models
    already integrated over the pixels (as the Sérsic fitter's are).
    """
    beta = nominal_psf_beta(attrs)
    return moffat_images(np.asarray(attrs["psf_fwhm_arcsec"]), beta, float(attrs["pixscale_arcsec"]), size_px, pixel)


def galaxy_psf_fwhm(shard: Shard, catalog: pd.DataFrame | None) -> tuple[np.ndarray | None, str]:
    """Each galaxy's PSF FWHM (N, bands; arcsec) from the catalogue, or ``None``, and a note saying what was used.

    The catalogue's ``psfsize_<survey>_<band>`` (the Legacy Surveys' Tractor ``psfsize_g/r/z``:
    the weighted-average PSF FWHM at the object's position) by ``id``. A survey without these
    columns (a user's folder, downloads without the Tractor catalogue) gets ``None``: the
    nominal PSF. A galaxy or band without a finite, positive value gets the nominal FWHM.
    """
    survey = str(shard.attrs.get("survey", ""))
    cols = [f"psfsize_{survey}_{b}" for b in shard.bands]
    if catalog is None or not set(cols) <= set(catalog.columns):
        return None, f"{survey}: the catalogue has no PSF size ({', '.join(cols)}): the nominal PSF"
    nominal = np.asarray(shard.attrs["psf_fwhm_arcsec"], dtype=float)
    table = catalog.assign(id=catalog["id"].astype(str)).drop_duplicates("id").set_index("id")
    values = table.reindex(np.asarray(shard.ids, dtype=str))[cols].to_numpy(float)
    bad = ~(np.isfinite(values) & (values > 0))
    fwhm = np.where(bad, nominal[None, :], values).astype(np.float32)
    note = f"{survey}: each galaxy's PSF from the catalogue's PSF size"
    if bad.any():
        note += f" ({int(bad.any(axis=1).sum())} of {len(fwhm)} galaxies without one in some band: the nominal FWHM)"
    return fwhm, note


def normalise(images: np.ndarray, softening: np.ndarray | list[float]) -> np.ndarray:
    """Network normalisation: ``asinh(image / softening)`` per band.

    ``images`` is (..., bands, H, W) in image units; ``softening`` has one value per band.
    """
    s = np.asarray(softening, dtype=np.float32).reshape(-1, 1, 1)
    return asinh_scale(images, s)


def denormalise(normed: np.ndarray, softening: np.ndarray | list[float]) -> np.ndarray:
    """Inverse of :func:`normalise`: ``softening * sinh(x)``, back in image units."""
    s = np.asarray(softening, dtype=np.float32).reshape(-1, 1, 1)
    return from_asinh_scale(normed, s)


def _segment(image: np.ndarray, ivar: np.ndarray, params: Mapping[str, Any]) -> tuple[np.ndarray | None, np.ndarray]:
    """Segment the detection image; return (labels or None, smoothed detection image).

    The detection image ``sum_b(image_b ivar_b) / sqrt(sum_b ivar_b)`` has unit noise
    per pixel (given a correct ``ivar``); after Gaussian smoothing its noise is
    ``sqrt(sum(kernel^2))``, and pixels above ``detect_nsigma`` times that form sources.
    """
    wsum = ivar.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = np.where(wsum > 0, (image * ivar).sum(axis=0) / np.sqrt(wsum), 0.0)
    sigma = float(params["smooth_fwhm_px"]) / 2.355
    if sigma > 0:
        smooth = ndimage.gaussian_filter(det, sigma)
        delta = np.zeros((8 * int(np.ceil(sigma)) + 1,) * 2)
        delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
        noise = float(np.sqrt((ndimage.gaussian_filter(delta, sigma) ** 2).sum()))
    else:
        smooth, noise = det, 1.0
    valid = wsum > 0
    if valid.sum() < 10:
        return None, smooth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        seg = detect_sources(smooth, float(params["detect_nsigma"]) * noise, int(params["detect_npixels"]), mask=~valid)
    if seg is None:
        return None, smooth
    if float(params["deblend_contrast"]) < 1:
        seg = deblend_sources(
            smooth,
            seg,
            int(params["detect_npixels"]),
            n_levels=32,
            contrast=float(params["deblend_contrast"]),
            progress_bar=False,
        )
    return seg.data, smooth


def clipped_stats(pixels: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> tuple[float, float, float]:
    """(mean, median, std) after iterative ``sigma`` clipping around the median.

    The same statistic as :func:`astropy.stats.sigma_clipped_stats` with its defaults,
    for finite 1-d data, several times faster on small stamps.
    """
    x = np.asarray(pixels, dtype=np.float64).ravel()
    for _ in range(maxiters):
        med, std = np.median(x), x.std()
        keep = np.abs(x - med) <= sigma * std
        if keep.all() or keep.sum() < 3:
            break
        x = x[keep]
    return float(x.mean()), float(np.median(x)), float(x.std())


def sky_level(pixels: np.ndarray) -> float:
    """Sky level of source-free pixels: the SExtractor mode ``2.5 median - 1.5 mean``
    after 3-sigma clipping (robust to the faint wings of galaxies), or the median
    when the distribution is strongly skewed."""
    mean, median, std = clipped_stats(pixels)
    if std > 0 and abs(mean - median) / std > 0.3:
        return float(median)
    return float(2.5 * median - 1.5 * mean)


def _grown_sources(labels: np.ndarray, struct: np.ndarray) -> np.ndarray:
    """All sources, each dilated by half its equivalent radius (at least 2 pixels)."""
    grown = np.zeros(labels.shape, bool)
    for lab in np.unique(labels[labels > 0]):
        seg = labels == lab
        radius = np.sqrt(seg.sum() / np.pi)
        grown |= ndimage.binary_dilation(seg, struct, iterations=max(2, int(0.5 * radius)))
    return grown


def _central_label(labels: np.ndarray, max_dist_px: float = 3.0) -> int:
    """Label of the segment at the stamp centre (or the nearest within ``max_dist_px``)."""
    h, w = labels.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y0, x0 = int(round(cy)), int(round(cx))
    if labels[y0, x0] > 0:
        return int(labels[y0, x0])
    yy, xx = np.nonzero(labels)
    if len(yy) == 0:
        return 0
    d = np.hypot(yy - cy, xx - cx)
    k = int(np.argmin(d))
    return int(labels[yy[k], xx[k]]) if d[k] <= max_dist_px else 0


def sky_sigma(attrs: Mapping[str, Any], ivar: np.ndarray) -> list[float]:
    """Per-band sky noise (image units per pixel): the ``sky_sigma`` attribute, else the median over pixels
    of ``1 / sqrt(ivar)`` (1 for a band without data); ``ivar`` is (N, bands, H, W)."""
    if attrs.get("sky_sigma") is not None:
        return [float(v) for v in attrs["sky_sigma"]]
    return [
        float(np.median(1 / np.sqrt(ivar[:, b][ivar[:, b] > 0]))) if (ivar[:, b] > 0).any() else 1.0
        for b in range(ivar.shape[1])
    ]


def preprocess_shard(
    shard: Shard,
    params: Mapping[str, Any] | None = None,
    failures: FailureLog | None = None,
    progress: bool = True,
    catalog: pd.DataFrame | None = None,
) -> Shard:
    """Background-subtract, segment, mask and attach PSFs to every galaxy of ``shard``.

    ``params["psf"]``: ``"catalogue"`` attaches each galaxy's PSF FWHM from ``catalog``
    (a table with ``id`` and ``psfsize_<survey>_<band>`` in arcsec: :func:`galaxy_psf_fwhm`),
    falling back to the survey's nominal PSF, with a logged note, where it has none;
    ``"nominal"`` always uses the nominal PSF.

    Galaxies that cannot be processed (no valid pixels, no source at the centre of a
    broad-band image) are recorded in ``failures`` with the reason and kept in the
    output (with ``flags`` set), so no galaxy disappears. ``params`` may hold
    per-survey settings under ``surveys`` (:func:`galmap.preprocess.settings.survey_params`).
    ``progress``: a progress bar over the galaxies (stderr: the job's log).
    """
    p = DEFAULTS | survey_params(params or {}, str(shard.attrs.get("survey", "")))
    if p["psf"] not in PSF_SOURCES:
        raise ValueError(f"unknown preprocess.psf {p['psf']!r} ({', '.join(PSF_SOURCES)})")
    psf_fwhm, note = (None, "the nominal PSF (preprocess.psf: nominal)")
    if p["psf"] == "catalogue":
        psf_fwhm, note = galaxy_psf_fwhm(shard, catalog)
    log.info("PSF of %s: %s", shard.attrs.get("survey", "?"), note)
    images = np.array(shard.images, dtype=np.float32, copy=True)
    ivar = np.array(shard.ivar, dtype=np.float32, copy=True)
    n, nb, h, w = images.shape
    bands = shard.bands
    line_map = set(bands) <= LINE_BANDS
    segmap = np.zeros((n, h, w), bool)
    mask = np.zeros((n, h, w), bool)
    background = np.zeros((n, nb), np.float32)
    flags = np.zeros(n, np.int32)
    struct = ndimage.generate_binary_structure(2, 1)

    survey = str(shard.attrs.get("survey", ""))
    for i in tqdm(range(n), desc=f"preprocess {survey}", unit="gal", disable=not progress, mininterval=2):
        gid = str(shard.ids[i])
        bad = ~np.isfinite(images[i]) | ~np.isfinite(ivar[i]) | (ivar[i] < 0)
        if bad.any():
            flags[i] |= FLAGS["bad_pixels"]
            ivar[i][bad] = 0.0
            images[i][bad] = 0.0
        valid_band = (ivar[i] > 0).any(axis=(1, 2))
        if not valid_band.any():
            flags[i] |= FLAGS["no_data"]
            if failures is not None:
                failures.add(gid, f"{shard.attrs['survey']}: no valid pixel in any band (all NaN/inf or ivar <= 0)")
            continue
        if not valid_band.all():
            flags[i] |= FLAGS["missing_band"]
            missing = ", ".join(b for b, ok in zip(bands, valid_band, strict=True) if not ok)
            if failures is not None:
                failures.add(gid, f"{shard.attrs['survey']}: band(s) {missing} have no valid pixel")
        # first pass: remove a clipped-median sky so the detection image is centred on 0
        for b in range(nb):
            v = ivar[i, b] > 0
            if v.any():
                background[i, b] = clipped_stats(images[i, b][v], maxiters=2)[1]
        labels, _ = _segment(images[i] - background[i][:, None, None], ivar[i], p)
        central = 0 if labels is None else _central_label(labels)
        if labels is not None:
            segmap[i] = labels == central if central else False
            others = (labels > 0) & (labels != central)
            if int(p["mask_dilate_px"]) > 0 and others.any():
                others = ndimage.binary_dilation(others, struct, iterations=int(p["mask_dilate_px"]))
            mask[i] = others & ~segmap[i]
        if not central:
            flags[i] |= FLAGS["no_central_source"]
            if failures is not None and not line_map:
                failures.add(
                    gid,
                    f"{shard.attrs['survey']}: no source detected at the stamp centre (empty segmentation)",
                )
        # second pass: background from pixels outside every (grown) source
        # galaxy wings extend below the detection threshold: grow each source by half
        # its equivalent radius before measuring the sky, and use the mode estimate
        sources = _grown_sources(labels, struct) if labels is not None else np.zeros((h, w), bool)
        for b in range(nb):
            v = (ivar[i, b] > 0) & ~sources
            if v.sum() < 0.1 * h * w:
                flags[i] |= FLAGS["few_background_pixels"]
            if v.sum() >= 5:
                background[i, b] = sky_level(images[i, b][v])
        images[i] -= background[i][:, None, None]
        ivar[i][:, mask[i]] = 0.0
        images[i][bad] = 0.0

    softening = [float(p["norm_softening"]) * s for s in sky_sigma(shard.attrs, ivar)]
    attrs = dict(shard.attrs) | {
        "norm": "asinh",
        "norm_softening": softening,
        "flag_bits": [f"{k}={v}" for k, v in FLAGS.items()],
        # psf and psf_profile: the survey's nominal Moffat (psf_images); catalogue: each galaxy's FWHM in psf_fwhm
        "psf_source": "nominal" if psf_fwhm is None else "catalogue",
        "preprocessed": True,
    }
    extra = {
        "segmap": segmap,
        "mask": mask,
        "psf": psf_images(shard.attrs, int(p["psf_stamp_px"])),
        "psf_profile": psf_images(shard.attrs, int(p["psf_stamp_px"]), pixel=False),
        "background": background,
        "flags": flags,
    }
    if psf_fwhm is not None:
        extra["psf_fwhm"] = psf_fwhm
    return Shard(images=images, ivar=ivar, ids=shard.ids, attrs=attrs, extra=extra)
