"""Image-similarity metrics of reconstructions: SSIM, MSE, MAE, chi2 per degree of freedom.

SSIM (Wang et al. 2004) is computed per galaxy and band on images in image units
(the de-normalised reconstruction against the preprocessed input), with

* a Gaussian window of sigma 1.5 pixels truncated at radius 5 (11 x 11 pixels),
  evaluated where the whole window lies inside the stamp;
* constants ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with the data range ``L``
  the max - min of the input band over its unmasked pixels;
* masked pixels (``w = 0``: neighbours, bad pixels) set to the reconstruction's
  value in both images, and the SSIM map averaged over windows centred on
  unmasked pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SSIM_SIGMA_PX = 1.5
SSIM_RADIUS_PX = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _blur_matrix(n: int, sigma: float, radius: int, like: torch.Tensor) -> torch.Tensor:
    """(n, n - 2 radius) matrix whose columns are the normalised Gaussian at each 'valid' position."""
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    out = torch.zeros(n, n - 2 * radius, dtype=like.dtype, device=like.device)
    for j, kj in enumerate(k):  # column i holds the kernel in rows i .. i + 2 radius
        out.diagonal(-j).fill_(kj)
    return out


def _gaussian_blur(img: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian filter of (M, 1, H, W) images, 'valid' region only.

    Two banded matrix products rather than two 1-D convolutions: the same sums,
    several times faster in double precision on a CPU.
    """
    h, w = img.shape[-2:]
    kh = _blur_matrix(h, sigma, radius, img)
    kw = _blur_matrix(w, sigma, radius, img)
    return kh.T @ (img @ kw)


def ssim(reference: torch.Tensor, image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per galaxy and band, shape (N, B), of (N, B, H, W) images (see the module docstring)."""
    n, b, h, w = reference.shape
    ref = torch.where(valid, reference, image).reshape(n * b, 1, h, w).double()
    img = image.reshape(n * b, 1, h, w).double()
    v = valid.reshape(n * b, -1)
    big = torch.finfo(ref.dtype).max
    hi = torch.where(v, ref.reshape(n * b, -1), -big).amax(1)
    lo = torch.where(v, ref.reshape(n * b, -1), big).amin(1)
    data_range = torch.where(v.any(1), hi - lo, torch.zeros_like(hi)).view(-1, 1, 1, 1)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    blur = lambda a: _gaussian_blur(a, SSIM_SIGMA_PX, SSIM_RADIUS_PX)  # noqa: E731
    mu_x, mu_y = blur(ref), blur(img)
    sxx = blur(ref * ref) - mu_x**2
    syy = blur(img * img) - mu_y**2
    sxy = blur(ref * img) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2) + 1e-300)
    r = SSIM_RADIUS_PX
    centre = valid.reshape(n * b, 1, h, w)[:, :, r : h - r, r : w - r].double()
    mean = (smap * centre).sum((1, 2, 3)) / centre.sum((1, 2, 3)).clamp(min=1)
    mean = torch.where(centre.sum((1, 2, 3)) > 0, mean, torch.full_like(mean, float("nan")))
    return mean.view(n, b).float()


def masked_errors(x: torch.Tensor, xhat: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-galaxy errors over unmasked pixels (``w > 0``) of normalised images (N, B, H, W).

    ``mse`` and ``mae``: mean squared and absolute difference on the asinh scale;
    ``chi2_nu``: ``sum(w (x - xhat)^2)`` per unmasked pixel (1 = residuals at the
    noise level); ``n_pix``: the number of unmasked pixels.
    """
    valid = (w > 0).to(x.dtype)
    n_pix = valid.sum((1, 2, 3))
    d = (x - xhat) * valid
    denom = n_pix.clamp(min=1)
    nan = torch.full_like(n_pix, float("nan"))
    ok = n_pix > 0
    return {
        "mse": torch.where(ok, (d**2).sum((1, 2, 3)) / denom, nan),
        "mae": torch.where(ok, d.abs().sum((1, 2, 3)) / denom, nan),
        "chi2_nu": torch.where(ok, (w * (x - xhat) ** 2).sum((1, 2, 3)) / denom, nan),
        "n_pix": n_pix,
    }


# ---------------------------------------------------------------------------------------------------------------
# Azimuthal Fourier structure (arms, bars, lopsidedness), numpy, one galaxy at a time.

#: The azimuthal orders measured: m = 1 lopsidedness, 2 bars and two-armed spirals, 3 and 4 multi-armed structure.
FOURIER_MODES = (1, 2, 3, 4)


def ellipse_of(image: np.ndarray, valid: np.ndarray) -> tuple[float, float, float, float]:
    """Centre ``(x, y)`` (pixels), axis ratio ``q`` and position angle (radians, from +x) of a galaxy.

    From the first and second moments of the positive flux over the ``valid`` pixels
    of a 2-D ``image``; a galaxy without positive flux gets the stamp centre and q = 1.
    """
    h, w = image.shape
    f = np.where(valid & np.isfinite(image), np.clip(image, 0, None), 0.0)
    total = f.sum()
    if not total > 0:
        return (w - 1) / 2, (h - 1) / 2, 1.0, 0.0
    y, x = np.mgrid[:h, :w]
    xc, yc = (f * x).sum() / total, (f * y).sum() / total
    dx, dy = x - xc, y - yc
    cxx, cyy, cxy = (f * dx * dx).sum() / total, (f * dy * dy).sum() / total, (f * dx * dy).sum() / total
    half_tr, det_term = (cxx + cyy) / 2, np.hypot((cxx - cyy) / 2, cxy)
    major, minor = half_tr + det_term, max(half_tr - det_term, 0.0)
    q = float(np.sqrt(minor / major)) if major > 0 else 1.0
    return float(xc), float(yc), max(q, 0.05), float(0.5 * np.arctan2(2 * cxy, cxx - cyy))


def fourier_annuli(
    image: np.ndarray,
    valid: np.ndarray,
    ellipse: tuple[float, float, float, float],
    modes: Sequence[int] = FOURIER_MODES,
    dr_px: float = 1.0,
    min_coverage: float = 0.7,
    min_pixels: int = 8,
    n_annuli: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Complex relative Fourier coefficients per elliptical annulus of a 2-D ``image``.

    Pixels are placed in the galaxy's deprojected plane (``ellipse`` from :func:`ellipse_of`:
    the minor axis stretched by 1/q, so an inclined axisymmetric disk has no m = 2), in
    annuli ``dr_px`` wide (deprojected pixels). Per annulus ``a_m = sum(I e^{-i m phi}) /
    sum(I)`` over its ``valid`` pixels. Annuli run outwards from the first holding
    ``min_pixels`` valid pixels and stop at the first that is less than ``min_coverage``
    covered (valid pixels over the pixels an annulus of that size holds: beyond the
    segment or the stamp, an incomplete ring would fake structure) or has no positive flux.
    ``n_annuli`` instead takes exactly that many annuli from the first (to measure a second image on a
    reference's annuli; an annulus it lacks gets ``a = 0``). Returns ``(a, weight)``: ``a``
    (len(modes), n_annuli) and the annuli's flux ``sum(I)``.
    """
    h, w = image.shape
    xc, yc, q, pa = ellipse
    y, x = np.mgrid[:h, :w]
    dx, dy = x - xc, y - yc
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
    r, phi = np.hypot(u, v), np.arctan2(v, u)
    ok = valid & np.isfinite(image)
    ring = np.floor(r / dr_px).astype(int)
    n_ring = int(ring[ok].max()) + 1 if ok.any() else 0
    # the azimuthal mean profile at each pixel's own radius: dividing by it removes the radial gradient across an
    # annulus, which a ring of few pixels would otherwise turn into spurious m > 0 terms
    r_mid = np.array([r[ok & (ring == k)].mean() if (ok & (ring == k)).any() else np.nan for k in range(n_ring)])
    prof = np.array([image[ok & (ring == k)].mean() if (ok & (ring == k)).any() else np.nan for k in range(n_ring)])
    good = np.isfinite(r_mid) & (prof > 0)
    if good.sum() >= 2:
        level = np.exp(np.interp(r, r_mid[good], np.log(prof[good])))
    else:
        level = np.ones_like(r)
    coeffs, weights = [], []
    started = False
    for k in range(n_ring):
        sel = ok & (ring == k)
        n = int(sel.sum())
        expected = 2 * np.pi * (k + 0.5) * dr_px**2 * q
        if not started:
            if n < min_pixels:
                continue
            started = True
        if n_annuli is not None:
            if len(coeffs) == n_annuli:
                break
        elif n < min_coverage * expected or n < min_pixels:
            break
        f, p = image[sel].astype(np.float64) / level[sel], phi[sel]
        c0 = f.sum()
        if not c0 > 0 or not image[sel].sum() > 0:
            if n_annuli is None:
                break
            coeffs.append([0j] * len(modes))
            weights.append(0.0)
            continue
        g = f - c0 / n  # the annulus's mean taken out: a constant ring sampled on pixels gives no m > 0 term
        coeffs.append([(g * np.exp(-1j * m * p)).sum() / c0 for m in modes])
        weights.append(float(image[sel].sum()))
    if n_annuli is not None:
        while len(coeffs) < n_annuli:
            coeffs.append([0j] * len(modes))
            weights.append(0.0)
    if not coeffs:
        return np.zeros((len(modes), 0), complex), np.zeros(0)
    return np.asarray(coeffs).T, np.asarray(weights)


def fourier_amplitudes(a: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Flux-weighted mean over annuli of ``|a_m|`` (relative to m = 0; NaN without annuli), per mode."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    return (np.abs(a) * weight).sum(1) / weight.sum()


def fourier_residual(a_ref: np.ndarray, a_img: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per mode, ``sum_r w |a_ref - a_img| / sum_r w |a_ref|``: the fraction of the reference's
    m-structure (amplitude and phase, annulus by annulus) an image does not reproduce
    (0 = all of it, 1 = an image without that structure; NaN without annuli)."""
    if a_ref.shape[1] == 0:
        return np.full(a_ref.shape[0], np.nan)
    den = (np.abs(a_ref) * weight).sum(1)
    return np.where(den > 0, (np.abs(a_ref - a_img) * weight).sum(1) / np.where(den > 0, den, 1), np.nan)
