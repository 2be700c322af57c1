"""Anomalies injected into the mock survey, with truth flags, for the outlier stage.

A configurable fraction of the galaxies (``mock.anomalies.fraction``) carries one
anomaly, the kinds taking turns so that each is represented. Two families:

* **astrophysical** (in every survey, part of the galaxy before the PSF):

  - ``lens_arc``: a blue gravitationally lensed arc around the galaxy at an
    Einstein radius ``anomaly_size_arcsec``, spanning ``anomaly_extent_deg``
    degrees, centred at position angle ``anomaly_angle_deg``; its r-band flux is
    ``anomaly_amp`` times the galaxy's;
  - ``irregular``: a very irregular galaxy, a lopsided spray of bright, blue,
    star-forming knots out to ``anomaly_size_arcsec`` that carries ``anomaly_amp``
    times the galaxy's r-band flux (and Hα).

* **instrumental** (only in the images of ``mock.anomalies.artefact_survey``):

  - ``satellite_trail``: a straight trail across the stamp in one band
    (``anomaly_band``), at angle ``anomaly_angle_deg`` and impact parameter
    ``anomaly_offset_arcsec`` from the stamp centre, with the band's PSF width and
    a peak of ``anomaly_amp`` sky sigmas per pixel;
  - ``star_ghost``: a pupil ghost of a bright star outside the stamp, a ring of
    radius ``anomaly_size_arcsec`` centred ``anomaly_offset_arcsec`` from the
    stamp centre, ``anomaly_amp`` sky sigmas per pixel, in every band;
  - ``bad_column``: a CCD column (``anomaly_offset_arcsec`` from the centre, in one
    band) offset by ``anomaly_amp`` sky sigmas, added after the noise (readout
    electronics), so the survey's inverse variance does not know about it.

The truth fluxes (``flux_<band>``) are those of the galaxy without the anomaly.
Anomalies are drawn from their own random stream: changing the fraction changes
no other galaxy parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import galsim
import numpy as np

from galmap.core.surveys import GSPARAMS, Survey

ASTROPHYSICAL = ("lens_arc", "irregular")
INSTRUMENTAL = ("satellite_trail", "star_ghost", "bad_column")
KINDS = ASTROPHYSICAL + INSTRUMENTAL

#: Colour (m_band - m_r, AB) of a lensed high-redshift source and of star-forming knots.
ARC_COLOUR = {"u": 0.7, "g": 0.25, "r": 0.0, "i": -0.05, "z": -0.1}
KNOT_COLOUR = {"u": 0.5, "g": 0.12, "r": 0.0, "i": -0.05, "z": -0.05}
#: Hα per unit r-band flux of the irregular knots (1e-17 erg/s/cm^2 per nanomaggy).
KNOT_HALPHA_PER_NMGY = 9.0

#: Anomaly columns of ``truth.parquet``.
COLUMNS = (
    "anomaly",
    "anomaly_band",
    "anomaly_amp",
    "anomaly_angle_deg",
    "anomaly_extent_deg",
    "anomaly_offset_arcsec",
    "anomaly_size_arcsec",
)


def draw_anomalies(
    n: int, config: Mapping[str, Any], gal_size_arcsec: np.ndarray, artefact_bands: Sequence[str]
) -> dict[str, np.ndarray]:
    """Choose the anomalous galaxies and draw their parameters (see the module docstring).

    ``gal_size_arcsec`` is each galaxy's half-light radius (arcsec), which sets the
    scale of arcs and knots; ``artefact_bands`` the bands of the artefact survey.
    """
    spec = config["mock"].get("anomalies", {})
    fraction = float(spec.get("fraction", 0.0))
    kinds = list(spec.get("kinds", KINDS))
    rng = np.random.default_rng(np.random.SeedSequence([int(config["seed"]), 0xA40]))
    out: dict[str, np.ndarray] = {
        "anomaly": np.full(n, "none", dtype=object),
        "anomaly_band": np.full(n, "", dtype=object),
        **{c: np.full(n, np.nan) for c in COLUMNS[2:]},
    }
    k = int(round(fraction * n)) if kinds else 0
    if k == 0:
        return out
    chosen = np.sort(rng.choice(n, size=min(k, n), replace=False))
    order = rng.permutation(len(kinds))
    for j, i in enumerate(chosen):
        kind = kinds[order[j % len(kinds)]]
        out["anomaly"][i] = kind
        re = float(np.clip(gal_size_arcsec[i], 0.8, 4.0))
        out["anomaly_angle_deg"][i] = rng.uniform(0, 360)
        if kind == "lens_arc":
            out["anomaly_amp"][i] = rng.uniform(0.4, 0.8)
            out["anomaly_size_arcsec"][i] = rng.uniform(1.6, 2.8) * max(1.0, 0.6 * re)
            out["anomaly_extent_deg"][i] = rng.uniform(100, 220)
        elif kind == "irregular":
            out["anomaly_amp"][i] = rng.uniform(0.8, 1.5)
            out["anomaly_size_arcsec"][i] = rng.uniform(1.5, 2.5) * re
        elif kind == "satellite_trail":
            out["anomaly_band"][i] = rng.choice(list(artefact_bands))
            out["anomaly_amp"][i] = rng.uniform(15.0, 60.0)
            out["anomaly_offset_arcsec"][i] = rng.uniform(-3.0, 3.0)
        elif kind == "star_ghost":
            out["anomaly_amp"][i] = rng.uniform(5.0, 12.0)
            out["anomaly_size_arcsec"][i] = rng.uniform(2.5, 4.5)
            out["anomaly_offset_arcsec"][i] = rng.uniform(1.0, 3.0)
        elif kind == "bad_column":
            out["anomaly_band"][i] = rng.choice(list(artefact_bands))
            out["anomaly_amp"][i] = rng.uniform(15.0, 60.0)
            out["anomaly_offset_arcsec"][i] = rng.uniform(-4.0, 4.0)
        else:  # the config schema lists the kinds; guard against library callers
            raise ValueError(f"unknown anomaly kind {kind!r} (known: {', '.join(KINDS)})")
    return out


def astrophysical_profile(row: Mapping[str, Any], seed: int) -> tuple[galsim.GSObject, dict[str, float]] | None:
    """The unit-flux profile of an astrophysical anomaly (sky plane, arcsec, relative
    to the galaxy centre) and its flux per unit galaxy r-band flux in each band.

    Returns None for galaxies without an astrophysical anomaly.
    """
    kind = row.get("anomaly", "none")
    if kind not in ASTROPHYSICAL:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(row["index"]), 0xA41]))
    amp = float(row["anomaly_amp"])
    size = float(row["anomaly_size_arcsec"])
    angle = np.radians(float(row["anomaly_angle_deg"]))
    if kind == "lens_arc":
        extent = np.radians(float(row["anomaly_extent_deg"]))
        phi = angle + np.linspace(-extent / 2, extent / 2, 40)
        w = np.exp(-0.5 * (np.linspace(-1.5, 1.5, 40)) ** 2)  # brightest at the arc's middle
        parts = [
            galsim.Gaussian(sigma=0.12, flux=float(wi), gsparams=GSPARAMS).shift(size * np.cos(p), size * np.sin(p))
            for p, wi in zip(phi, w, strict=True)
        ]
        colours = ARC_COLOUR
        ha = 0.0
    else:
        m = int(rng.integers(5, 10))
        rad = size * np.sqrt(rng.uniform(0.15, 1.0, m))
        ang = angle + rng.normal(0.0, 0.9, m)  # lopsided: the knots cluster on one side
        w = rng.lognormal(0.0, 0.6, m)
        parts = [
            galsim.Gaussian(sigma=float(rng.uniform(0.15, 0.35)), flux=float(wi), gsparams=GSPARAMS).shift(
                r * np.cos(a), r * np.sin(a)
            )
            for r, a, wi in zip(rad, ang, w, strict=True)
        ]
        colours = KNOT_COLOUR
        ha = KNOT_HALPHA_PER_NMGY
    prof = galsim.Add(parts).withFlux(1.0)
    fluxes = {b: amp * 10 ** (-0.4 * c) for b, c in colours.items()}
    fluxes["VIS"] = float(np.mean([fluxes[b] for b in ("r", "i", "z")]))
    fluxes["Ha"] = amp * ha
    return prof, fluxes


def artefact_image(row: Mapping[str, Any], survey: Survey, band: str, after_noise: bool) -> np.ndarray | None:
    """The instrumental artefact of ``row`` in one band of ``survey`` (flux per pixel), or None.

    ``after_noise`` selects the artefacts added after the noise (bad columns) or
    before it (trails, ghosts: light on the detector, with its Poisson noise).
    """
    kind = row.get("anomaly", "none")
    if kind not in INSTRUMENTAL or (kind == "bad_column") != after_noise:
        return None
    if row["anomaly_band"] and row["anomaly_band"] != band:
        return None
    n = survey.stamp_px
    scale = survey.pixscale_arcsec
    sigma_sky = survey.sky_sigma[survey.bands.index(band)]
    amp = float(row["anomaly_amp"]) * sigma_sky
    c = (n - 1) / 2
    y, x = (np.mgrid[0:n, 0:n] - c) * scale
    angle = np.radians(float(row["anomaly_angle_deg"]))
    offset = float(row["anomaly_offset_arcsec"])
    if kind == "satellite_trail":
        width = survey.psf_fwhm_arcsec[survey.bands.index(band)] / 2.355
        d = x * np.sin(angle) - y * np.cos(angle) - offset
        img = amp * np.exp(-0.5 * (d / width) ** 2)
    elif kind == "star_ghost":
        radius = float(row["anomaly_size_arcsec"])
        d = np.hypot(x - offset * np.cos(angle), y - offset * np.sin(angle))
        img = amp * np.exp(-0.5 * ((d - radius) / (0.15 * radius)) ** 2)
    else:
        col = int(np.clip(round(c + offset / scale), 0, n - 1))
        img = np.zeros((n, n))
        img[:, col] = amp
    return img.astype(np.float32)
