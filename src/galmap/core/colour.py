"""Colour composites of multi-band galaxy images, drawn as astronomers draw them.

Two recipes, both with one stretch shared by the three bands, so that colour
means colour (a per-band stretch turns every galaxy grey-white or green):

* :func:`lupton_rgb`: Lupton et al. (2004, PASP 116, 133), the recipe of
  ``astropy.visualization.make_lupton_rgb``: an asinh stretch of the mean
  intensity ``I = (R + G + B) / 3``, every channel multiplied by the same
  ``f(I) / I``, and pixels brighter than white scaled down as a whole (their hue kept).
* :func:`gz_decals_rgb`: the Galaxy Zoo DECaLS recipe (the ``dr2_style_rgb`` of
  the DR1/DR2 Galaxy Zoo DECaLS subjects, by D. Lang and K. Willett, with the
  DR5 settings of Walmsley et al. 2022): each of g, r, z (nanomaggies) divided by
  a fixed per-band scale (g 0.008, r 0.014, z 0.019), ``asinh``, mapped from
  ``[asinh(-0.5), asinh(300)]`` to ``[0, 1]``, then desaturated where one band
  dominates (no speckled colour sky). :func:`gz_decals_pixscale` is its
  field-of-view rule.

:func:`composite` is the one entry point of the figures: it picks the bands
(g, r, i for SDSS-like ugriz; g, r, z for DECaLS-like data; grey for one band)
and applies :func:`lupton_rgb`. Images are (bands, H, W) in flux units
(nanomaggies); outputs are float RGB (H, W, 3) in ``[0, 1]`` (or (H, W) for grey).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from galmap.core.stats import robust_std

#: Galaxy Zoo DECaLS DR5 band scales (nanomaggies per unit before the asinh) and RGB planes.
GZ_DECALS_SCALES = {"g": (2, 0.008), "r": (1, 0.014), "z": (0, 0.019)}
#: Galaxy Zoo DECaLS DR5 black and white points, before the asinh.
GZ_DECALS_MINMAX = (-0.5, 300.0)
#: Galaxy Zoo DECaLS DR5 image side (pixels) and the limits of its pixel-scale rule (arcsec/px).
GZ_DECALS_SIZE_PX = 424
GZ_DECALS_MIN_PIXSCALE = 0.1

#: Band balance (multiplier per band, RGB order reddest first) of the Lupton composites: the
#: relative weights of the Galaxy Zoo / Legacy Survey ``dr2_style_rgb`` recipe for each band triplet
#: (g, r, z: 1/0.008, 1/0.014, 1/0.019; g, r, i: 1/0.002, 1/0.004, 1/0.005), so a red
#: elliptical comes out orange-red and a star-forming disk blue-white. Other triplets: equal weights.
LUPTON_WEIGHTS = {
    ("z", "r", "g"): (1 / 0.019, 1 / 0.014, 1 / 0.008),
    ("i", "r", "g"): (1 / 0.005, 1 / 0.004, 1 / 0.002),
}

#: Preference of bands for the composite's red, green and blue: reddest to bluest.
_BAND_ORDER = ["Ha", "VIS", "z", "i", "r", "g", "u"]


def pick_bands(bands: Sequence[str]) -> list[int]:
    """Indices of the bands a composite shows, reddest first.

    g, r, i where all three exist (SDSS-like ugriz), else g, r, z; else the
    reddest, middle and bluest of the known bands; one or two bands as given.
    """
    idx = {b: j for j, b in enumerate(bands)}
    for triplet in (("i", "r", "g"), ("z", "r", "g")):
        if all(b in idx for b in triplet):
            return [idx[b] for b in triplet]
    known = sorted(range(len(bands)), key=lambda j: _BAND_ORDER.index(bands[j]) if bands[j] in _BAND_ORDER else 99)
    if len(known) >= 3:
        return [known[0], known[len(known) // 2], known[-1]]
    return known


def _pair_weights(red: str, blue: str) -> tuple[float, float]:
    """Band balance of a two-band composite: the weights of a triplet holding both bands, else equal."""
    for triplet, weights in LUPTON_WEIGHTS.items():
        if red in triplet and blue in triplet:
            return weights[triplet.index(red)], weights[triplet.index(blue)]
    return 1.0, 1.0


def lupton_rgb(
    rgb: np.ndarray, softening: float, maximum: float | None = None, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Lupton et al. (2004) colour composite with one stretch for all three channels.

    Parameters
    ----------
    rgb : (3, H, W) flux images for red, green, blue (any flux unit, one for all three).
    softening : the asinh softening of the mean intensity, in the weighted flux unit
        (linear below it, logarithmic above); e.g. twice the sky noise.
    maximum : weighted mean intensity that becomes white; default the 99.5th percentile
        of the intensity of the stamp (one number for the three channels).
    weights : per-channel multipliers applied first (the band balance).

    Returns
    -------
    (H, W, 3) float array in [0, 1]. Hues are those of ``weights * rgb``: every
    channel is scaled by the same ``asinh(I / softening) / asinh(max / softening) / I``.
    """
    x = np.nan_to_num(np.asarray(rgb, dtype=float))
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"lupton_rgb needs a (3, H, W) array, got shape {x.shape}")
    if weights is not None:
        x = x * np.asarray(weights, float)[:, None, None]
    x = np.maximum(x, 0.0)
    intensity = x.mean(axis=0)
    soft = float(softening) if softening and softening > 0 else 1.0
    top = float(maximum) if maximum is not None else float(np.percentile(intensity, 99.5))
    top = top if top > 0 else soft
    fi = np.arcsinh(intensity / soft) / np.arcsinh(top / soft)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(intensity > 0, fi / intensity, 0.0)
    out = x * scale[None]
    peak = out.max(axis=0)
    out = np.where(peak > 1.0, out / np.maximum(peak, 1e-30), out)  # keep the hue of saturated pixels
    return np.clip(np.moveaxis(out, 0, -1), 0.0, 1.0)


def composite(image: np.ndarray, bands: Sequence[str], sigma: Sequence[float] | None = None) -> np.ndarray:
    """The figures' display image of one stamp: a Lupton composite, or grey for one band.

    Parameters
    ----------
    image : (bands, H, W) in flux units.
    bands : band names of the planes.
    sigma : per-band sky noise (flux units); the softening is twice the weighted mean
        sky noise of the shown bands. Without it, the robust standard deviation of the
        weighted mean image (one number for all bands).

    Returns
    -------
    (H, W, 3) RGB or (H, W) grey, in [0, 1].
    """
    img = np.nan_to_num(np.asarray(image, dtype=float))
    pick = pick_bands(bands)
    if len(pick) == 1:
        x = img[pick[0]]
        s = float(sigma[pick[0]]) if sigma is not None else (robust_std(x) or 1.0)
        top = float(np.percentile(x, 99.5))
        top = top if top > 0 else 2 * s
        return np.clip(np.arcsinh(np.maximum(x, 0) / (2 * s)) / np.arcsinh(top / (2 * s)), 0.0, 1.0)
    if len(pick) == 2:  # red, blue and their (balanced) mean as green
        wr, wb = _pair_weights(bands[pick[0]], bands[pick[1]])
        red, blue = wr * img[pick[0]], wb * img[pick[1]]
        planes = np.stack([red, 0.5 * (red + blue), blue])
        sig = None if sigma is None else [wr * sigma[pick[0]], 0.5 * (wr * sigma[pick[0]] + wb * sigma[pick[1]]),
                                          wb * sigma[pick[1]]]  # fmt: skip
        w = np.ones(3)
    else:
        planes = img[pick]
        sig = None if sigma is None else [sigma[j] for j in pick]
        w = np.asarray(LUPTON_WEIGHTS.get(tuple(bands[j] for j in pick), (1.0, 1.0, 1.0)), float)
    w = w / np.mean(w)
    if sig is not None:
        soft = 2.0 * float(np.mean(w * np.asarray(sig, float)))
    else:
        soft = 2.0 * (robust_std((planes * w[:, None, None]).mean(0)) or 1.0)
    return lupton_rgb(planes, soft, weights=w)


def gz_decals_rgb(grz: np.ndarray, desaturate: bool = True) -> np.ndarray:
    """The Galaxy Zoo DECaLS colour image of g, r, z images in nanomaggies.

    Parameters
    ----------
    grz : (3, H, W) g, r, z in nanomaggies (the Legacy Survey's image unit).
    desaturate : soften pixels dominated by one band (the DR5 images did).

    Returns
    -------
    (H, W, 3) float in [0, 1]: red = z, green = r, blue = g.
    """
    x = np.nan_to_num(np.asarray(grz, dtype=float))
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"gz_decals_rgb needs g, r, z as a (3, H, W) array, got shape {x.shape}")
    h, w = x.shape[1:]
    rgb = np.zeros((3, h, w))
    for band, im in zip("grz", x, strict=True):
        plane, scale = GZ_DECALS_SCALES[band]
        rgb[plane] = im / scale
    lo, hi = (np.arcsinh(v) for v in GZ_DECALS_MINMAX)
    rgb = (np.arcsinh(rgb) - lo) / (hi - lo)
    if desaturate:
        mean = rgb.mean(axis=0)
        mean = np.where(mean == 0.0, 1.0, mean)
        # the largest band-to-mean ratio (/2.5), capped at 1, sets how much colour a pixel keeps
        dominance = np.minimum((rgb / mean[None]).max(axis=0) / 2.5, 1.0)
        wt = np.sin((1.0 - dominance) * np.pi / 2.0)
        rgb = rgb * wt + mean * (1 - wt) + mean * (1 - wt) ** 2 * rgb
    return np.clip(np.moveaxis(rgb, 0, -1), 0.0, 1.0)


def gz_decals_pixscale(r50_arcsec: np.ndarray | float, r90_arcsec: np.ndarray | float) -> np.ndarray | float:
    """The Galaxy Zoo DECaLS pixel scale (arcsec/px) of a 424-px image: the galaxy fills the frame.

    ``max(min(0.04 r50, 0.02 r90), 0.1)`` with r50, r90 the Petrosian 50% and 90%
    light radii in arcsec (NSA ``petroth50``, ``petroth90``); the field is 424 times that.
    """
    s = np.minimum(0.04 * np.asarray(r50_arcsec, float), 0.02 * np.asarray(r90_arcsec, float))
    return np.maximum(s, GZ_DECALS_MIN_PIXSCALE)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8, as the PNGs were written (``uint8(x * 255)``)."""
    return np.uint8(np.clip(rgb, 0.0, 1.0) * 255.0)
