"""Image statistics of 8-bit colour galaxy images (real Galaxy Zoo PNGs and mock renders alike).

Every statistic is measured the same way on both sets, from the display image
only (no calibration): the image is binned ``bin`` x ``bin`` (speed), its
luminance ``L = (R + G + B) / 3 / 255`` has the sky level (median of a border
``border`` binned pixels wide) subtracted, and the central object is the
connected region above ``sky + max(3 sigma_sky, 0.02)`` nearest the centre
(``sigma_sky``: the robust standard deviation of the border). Within it, with
radii about the image centre (the images are centred on their galaxy) in units of
the frame's side:

* ``r20, r50, r80`` (``r50`` is the size in the frame), ``concentration`` =
  5 log10(r80 / r20) (Conselice 2003);
* ``asymmetry``: sum |L - L_180| / sum |L| over the object and its rotation;
* ``smoothness``: sum of the positive part of L minus L boxcar-smoothed over
  ``r50 / 2`` (at least 3 binned px), over sum L;
* ``gini`` (Lotz et al. 2004) of the object's pixels, ``m20`` (Lotz et al. 2004);
* ``ellipticity`` from the second moments;
* colours: ``red_minus_blue``, ``green_minus_blue`` (flux-weighted mean channel
  differences over the object, /255), ``colour_gradient`` (red minus blue inside
  r50 minus outside);
* the frame: ``area_frac`` (object area / frame), ``sky_level``, ``sky_noise``
  (luminance units), ``sky_tint`` (red minus blue of the border, /255),
  ``n_other_sources`` (other regions of at least 2 binned pixels).

These names are :data:`STATISTICS`; the realism stage's config chooses among them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from galmap.core.stats import robust_std

STATISTICS = (
    "r20", "r50", "r80", "concentration", "asymmetry", "smoothness", "gini", "m20", "ellipticity",
    "red_minus_blue", "green_minus_blue", "colour_gradient", "area_frac", "sky_level", "sky_noise", "sky_tint",
    "n_other_sources",
)  # fmt: skip


def _bin(img: np.ndarray, k: int) -> np.ndarray:
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    x = img[:h, :w].astype(float)
    return x.reshape(h // k, k, w // k, k, *x.shape[2:]).mean(axis=(1, 3))


def _gini(values: np.ndarray) -> float:
    v = np.sort(np.abs(values))
    n = v.size
    if n < 2 or v.sum() <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * v) / (v.mean() * n * (n - 1)))


def _m20(flux: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> float:
    total = flux.sum()
    if total <= 0 or flux.size < 5:
        return float("nan")
    cy, cx = np.sum(flux * yy) / total, np.sum(flux * xx) / total
    m = flux * ((yy - cy) ** 2 + (xx - cx) ** 2)
    order = np.argsort(-flux)
    cum = np.cumsum(flux[order])
    top = order[: int(np.searchsorted(cum, 0.2 * total)) + 1]
    m_tot = m.sum()
    return float(np.log10(m[top].sum() / m_tot)) if m_tot > 0 and m[top].sum() > 0 else float("nan")


def measure(image: np.ndarray, bin: int = 4, border: int = 3) -> dict[str, float]:  # noqa: A002 - the binning factor
    """The :data:`STATISTICS` of one 8-bit RGB image (H, W, 3); NaN where undefined."""
    rgb = _bin(np.asarray(image)[..., :3], bin) / 255.0
    lum = rgb.mean(axis=-1)
    n = lum.shape[0]
    edge = np.ones_like(lum, bool)
    edge[border:-border, border:-border] = False
    sky = float(np.median(lum[edge]))
    noise = robust_std(lum[edge]) or 1e-3
    out = dict.fromkeys(STATISTICS, float("nan"))
    out.update(
        sky_level=sky,
        sky_noise=noise,
        sky_tint=float(np.median(rgb[..., 0][edge] - rgb[..., 2][edge])),
    )
    flux = lum - sky
    labels, nlab = ndimage.label(flux > sky_thresh(noise))
    if nlab == 0:
        return out
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    dist = np.hypot(yy, xx)
    # the region nearest the centre (touching it if any does)
    nearest = ndimage.minimum(dist, labels, index=np.arange(1, nlab + 1))
    central = int(np.argmin(nearest)) + 1
    seg = labels == central
    sizes = np.bincount(labels.ravel())[1:]
    out["n_other_sources"] = float(np.sum(sizes >= 2) - (sizes[central - 1] >= 2))
    f = np.where(seg, np.maximum(flux, 0.0), 0.0)
    total = f.sum()
    if total <= 0 or seg.sum() < 3:
        return out
    r = dist[seg]
    order = np.argsort(r)
    cum = np.cumsum(f[seg][order]) / total
    r20, r50, r80 = (float(np.interp(q, cum, r[order])) for q in (0.2, 0.5, 0.8))
    rot = f[::-1, ::-1]
    both = seg | seg[::-1, ::-1]
    s = max(3, int(round(r50 / 2)))
    smooth = ndimage.uniform_filter(np.where(seg, flux, 0.0), size=s)
    cyy = np.sum(f * yy**2) / total
    cxx = np.sum(f * xx**2) / total
    cxy = np.sum(f * xx * yy) / total
    tr, det = cxx + cyy, cxx * cyy - cxy**2
    lam = np.sqrt(np.maximum((tr / 2) ** 2 - det, 0.0))
    a2, b2 = tr / 2 + lam, max(tr / 2 - lam, 0.0)
    w = f[seg]
    red, green, blue = (rgb[..., c][seg] for c in range(3))
    inner = dist[seg] <= r50
    rb = red - blue

    def _wmean(x: np.ndarray, wt: np.ndarray) -> float:
        return float(np.sum(x * wt) / np.sum(wt)) if np.sum(wt) > 0 else float("nan")

    out.update(
        r20=r20 / n,
        r50=r50 / n,
        r80=r80 / n,
        concentration=5 * np.log10(r80 / r20),
        asymmetry=float(np.abs(f - rot)[both].sum() / (2 * total)),
        smoothness=float(np.maximum(f - smooth, 0.0)[seg].sum() / total),
        gini=_gini(flux[seg]),
        m20=_m20(w, yy[seg], xx[seg]),
        ellipticity=float(1 - np.sqrt(b2 / a2)) if a2 > 0 else float("nan"),
        red_minus_blue=_wmean(rb, w),
        green_minus_blue=_wmean(green - blue, w),
        colour_gradient=_wmean(rb, w * inner) - _wmean(rb, w * ~inner),
        area_frac=float(seg.mean()),
    )
    return out


def sky_thresh(noise: float) -> float:
    """Detection threshold above the sky (luminance units) for a sky noise ``noise``."""
    return max(3.0 * noise, 0.02)
