"""Simple model-independent measurements on images: total flux, half-light radius, FWHM.

Used to validate the mock renderer against its truth (and available to any stage).
Positions are in pixels with (0, 0) the centre of the first pixel; radii in pixels
unless a pixel scale is given.
"""

from __future__ import annotations

import numpy as np


def total_flux(image: np.ndarray) -> float:
    """Sum of the pixel values (image units, e.g. nanomaggies)."""
    return float(np.sum(image, dtype=np.float64))


def _elliptical_radius(
    shape: tuple[int, int], centre: tuple[float, float], q: float, pa_deg: float, oversample: int
) -> np.ndarray:
    """Semi-major-axis radius of sub-pixel samples, shape (H*os, W*os)."""
    h, w = shape
    off = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = (np.arange(h)[:, None] + off[None, :]).ravel()
    xs = (np.arange(w)[:, None] + off[None, :]).ravel()
    y, x = np.meshgrid(ys - centre[0], xs - centre[1], indexing="ij")
    c, s = np.cos(np.radians(pa_deg)), np.sin(np.radians(pa_deg))
    u = x * c + y * s
    v = -x * s + y * c
    return np.hypot(u, v / q)


def half_light_radius(
    image: np.ndarray,
    centre: tuple[float, float] | None = None,
    q: float = 1.0,
    pa_deg: float = 0.0,
    pixscale: float = 1.0,
    oversample: int = 5,
    total: float | None = None,
) -> float:
    """Half-light semi-major axis from the elliptical growth curve (units of ``pixscale``).

    ``total`` is the galaxy's total flux when known (e.g. from a model); by default
    the sum of the image, which underestimates the radius of profiles with wide
    wings (high Sérsic n) cut off by the stamp edge.

    Each pixel is split into ``oversample``^2 sub-pixels carrying equal shares of its
    flux; the growth curve is interpolated linearly at half the total flux.
    ``centre`` is (row, column) in pixels; default the stamp centre. ``pa_deg`` is
    counter-clockwise from the +x (column) axis.
    """
    h, w = image.shape
    centre = ((h - 1) / 2, (w - 1) / 2) if centre is None else centre
    r = _elliptical_radius((h, w), centre, q, pa_deg, oversample).ravel()
    flux = np.repeat(np.repeat(image, oversample, 0), oversample, 1).ravel() / oversample**2
    order = np.argsort(r)
    cum = np.cumsum(flux[order], dtype=np.float64)
    half = 0.5 * (cum[-1] if total is None else total)
    if half > cum[-1]:
        raise ValueError("half of the given total flux lies outside the image")
    k = int(np.searchsorted(cum, half))
    k = min(max(k, 1), len(cum) - 1)
    r0, r1 = r[order][k - 1], r[order][k]
    c0, c1 = cum[k - 1], cum[k]
    frac = 0.0 if c1 == c0 else (half - c0) / (c1 - c0)
    return float((r0 + frac * (r1 - r0)) * pixscale)


def fwhm(image: np.ndarray, pixscale: float = 1.0) -> float:
    """Full width at half maximum of a centred, round profile (units of ``pixscale``).

    The radius where the azimuthally sorted profile crosses half the peak is found by
    linear interpolation; sample the profile finely (several pixels per FWHM).
    """
    h, w = image.shape
    peak_y, peak_x = np.unravel_index(np.argmax(image), image.shape)
    y, x = np.mgrid[:h, :w]
    r = np.hypot(y - peak_y, x - peak_x).ravel()
    v = image.ravel()
    order = np.argsort(r)
    r, v = r[order], v[order]
    half = 0.5 * v[0]
    below = np.nonzero(v < half)[0]
    if len(below) == 0:
        raise ValueError("profile never falls below half its maximum inside the image")
    k = below[0]
    r_half = r[k - 1] + (v[k - 1] - half) / (v[k - 1] - v[k]) * (r[k] - r[k - 1])
    return float(2 * r_half * pixscale)
