"""Reconstruction metrics that see morphology: SSIM on the galaxy's segment, against the noiseless galaxy, and
the azimuthal Fourier structure (m = 1..4) the reconstruction keeps.

The SSIM of :mod:`galmap.latent.vae`'s ``latents.parquet`` compares the reconstruction with the noisy
input over the whole stamp, with the data range of that input: sky noise dominates it and a smooth blob
scores 0.95. Here, per test galaxy of the VAE's split:

* ``ssim_seg``: SSIM (:func:`galmap.nn.imagemetrics.ssim`, mean over bands) of the reconstruction against
  the input, averaged over windows centred on the galaxy's segment (the preprocessing's ``segmap``), with
  the data range of the input inside the segment;
* ``ssim_clean``: the same against the *noiseless* rendering of the same galaxy (mock only:
  :func:`render_noiseless`; NaN on real data, where no noiseless image exists);
* ``A{m}_ref``, ``A{m}_rec``: the azimuthal Fourier amplitudes (relative to m = 0) of the reference (the
  noiseless rendering, or on real data the noisy input) and of the reconstruction in one band
  (``fourier_band``), inside the segment, in the galaxy's deprojected plane
  (:func:`galmap.nn.imagemetrics.fourier_annuli`, same ellipse and annuli for both images);
  ``A{m}_ratio`` = rec / ref where ``A{m}_ref >= fourier_min_amplitude`` (below it the structure is not
  resolved and the ratio is noise; NaN there);
* ``res_m{m}``: the fraction of the reference's m-structure, annulus by annulus with its phase, that the
  reconstruction misses (:func:`galmap.nn.imagemetrics.fourier_residual`: 0 = kept, 1 = absent).

On real data the reference is the noisy input, whose noise adds to ``A{m}_ref`` (every m): the ratios
then understate what a reconstruction keeps, and only comparisons at equal depth are meaningful.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.nn.imagemetrics import FOURIER_MODES, ellipse_of, fourier_amplitudes, fourier_annuli, fourier_residual

log = logging.getLogger("galmap")


def render_noiseless(
    truth: pd.DataFrame, config: Mapping[str, Any], survey: str, failures: FailureLog | None = None
) -> Shard:
    """Noiseless stamps of the galaxies of ``truth`` in ``survey``, as the mock draws them, without noise.

    The galaxy, its companion and tides and an astrophysical anomaly are drawn with the survey's PSF on
    its grid (flux per pixel, the preprocessed images' unit: their background is subtracted); unrelated
    neighbours (masked in the networks' inputs) and instrumental artefacts are not. A galaxy GalSim cannot
    draw gets NaN pixels and a failures row. ``ivar`` is 0 (no noise model: these are references).
    """
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.render import GalaxyModel, draw
    from galmap.mock.systematics import galaxy_psf

    surveys = surveys_from_config(config)
    s = surveys[survey]
    field = max(v.fov_arcsec for v in surveys.values())  # as render_mock_shard: neighbours and arms depend on it
    seed = int(config["seed"])
    images = np.full((len(truth), len(s.bands), s.stamp_px, s.stamp_px), np.nan, np.float32)
    for i, row in enumerate(truth.to_dict("records")):
        try:
            model = GalaxyModel(row, seed, field)
            for j, band in enumerate(s.bands):
                # through the galaxy's own PSF, as its observed image (mock.systematics.psf)
                images[i, j] = draw(model, s, band, psf=galaxy_psf(row, s, band), neighbours=False)
        except Exception as exc:  # noqa: BLE001 - recorded, the others go on
            images[i] = np.nan
            if failures is not None:
                failures.add(row["id"], f"noiseless rendering in {survey} failed: {exc!r}")
            log.warning("noiseless rendering of %s in %s failed: %r", row["id"], survey, exc)
    attrs = s.attrs() | {"source": "mock", "noiseless": True}
    ids = truth["id"].to_numpy(dtype=object)
    return Shard(images=images, ivar=np.zeros_like(images), ids=ids, attrs=attrs)


def galaxy_metrics(
    ref_noisy: np.ndarray,
    recon: np.ndarray,
    segment: np.ndarray,
    valid: np.ndarray,
    clean: np.ndarray | None,
    band: int,
    min_amplitude: float,
) -> dict[str, float]:
    """Segment SSIMs and Fourier measures of one galaxy's reconstruction (see the module docstring).

    ``ref_noisy``, ``recon``, ``clean``: (bands, H, W) in image units; ``segment`` (H, W) bool;
    ``valid`` (bands, H, W) bool, the pixels with data.
    """
    import torch

    from galmap.nn.imagemetrics import ssim

    out: dict[str, float] = {}
    seg = segment[None] & valid
    rec_t = torch.from_numpy(np.ascontiguousarray(recon, np.float32))[None]
    seg_t = torch.from_numpy(seg)[None]
    s = ssim(torch.from_numpy(np.ascontiguousarray(ref_noisy, np.float32))[None], rec_t, seg_t).numpy()[0]
    out["ssim_seg"] = float(np.nanmean(s)) if np.isfinite(s).any() else np.nan
    have_clean = clean is not None and np.isfinite(clean).all()
    if have_clean:
        s = ssim(torch.from_numpy(np.ascontiguousarray(clean, np.float32))[None], rec_t, seg_t).numpy()[0]
        out["ssim_clean"] = float(np.nanmean(s)) if np.isfinite(s).any() else np.nan
    else:
        out["ssim_clean"] = np.nan
    reference = clean[band] if have_clean else ref_noisy[band]
    ring_pixels = seg[band]
    ellipse = ellipse_of(reference, ring_pixels)
    a_ref, weight = fourier_annuli(reference, ring_pixels, ellipse)
    a_rec, _ = fourier_annuli(recon[band], ring_pixels, ellipse, n_annuli=a_ref.shape[1])
    amp_ref, amp_rec = fourier_amplitudes(a_ref, weight), fourier_amplitudes(a_rec, weight)
    res = fourier_residual(a_ref, a_rec, weight)
    for k, m in enumerate(FOURIER_MODES):
        out[f"A{m}_ref"], out[f"A{m}_rec"] = float(amp_ref[k]), float(amp_rec[k])
        ok = np.isfinite(amp_ref[k]) and amp_ref[k] >= min_amplitude
        out[f"A{m}_ratio"] = float(amp_rec[k] / amp_ref[k]) if ok else np.nan
        out[f"res_m{m}"] = float(res[k])
    out["n_annuli"] = int(a_ref.shape[1])
    return out


def reconstruction_table(
    ids: Sequence[str],
    images: np.ndarray,
    recon: np.ndarray,
    segmap: np.ndarray,
    valid: np.ndarray,
    clean: Mapping[str, np.ndarray] | None,
    band: int,
    min_amplitude: float,
) -> pd.DataFrame:
    """:func:`galaxy_metrics` of every galaxy, a row each (``id`` first); ``clean`` maps id -> noiseless stamp."""
    rows = []
    for i, gid in enumerate(ids):
        ref = None if clean is None else clean.get(str(gid))
        rows.append(
            {"id": str(gid), "reference": "noiseless" if ref is not None else "input"}
            | galaxy_metrics(images[i], recon[i], segmap[i], valid[i], ref, band, min_amplitude)
        )
    return pd.DataFrame(rows)


def morph_summary(table: pd.DataFrame, spirals: set[str] | None = None) -> dict[str, float]:
    """Scan columns of one latent size from its :func:`reconstruction_table` (test galaxies).

    Medians over the test galaxies of ``ssim_seg``, ``ssim_clean``, ``res_m{m}``; the median ``A2_ratio``
    over all of them and, given the ids of the spirals (truth), over the test spirals
    (``a2_ratio_spirals``, with their number ``n_spirals``: those whose input m = 2 is resolved).
    """
    out: dict[str, float] = {
        "ssim_seg_median": float(table["ssim_seg"].median()),
        "ssim_clean_median": float(table["ssim_clean"].median()),
        "ssim_clean_mean": float(table["ssim_clean"].mean()),
        "a2_ratio_median": float(table["A2_ratio"].median()),
    }
    for m in FOURIER_MODES:
        out[f"res_m{m}_median"] = float(table[f"res_m{m}"].median())
    if spirals is not None:
        sp = table[table["id"].isin(spirals)]["A2_ratio"].dropna()
        out["a2_ratio_spirals"] = float(sp.median()) if len(sp) else np.nan
        out["n_spirals"] = int(len(sp))
    return out
