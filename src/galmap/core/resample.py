"""Resampling image stamps from one pixel grid to another, conserving flux and propagating noise.

Both grids are square stamps centred on the galaxy: pixel ``(n - 1) / 2`` is the
stamp centre (the convention of the mock and of the cutout service), so pixel
``j`` of a grid with scale ``s`` (arcsec/pixel) lies at ``(j - (n - 1) / 2) * s``
arcsec from the centre.

The image is treated as a surface brightness sampled at the pixel centres and
interpolated with a separable Lanczos-3 kernel; when the output pixels are
larger than the input ones the kernel is stretched to the output pixel (an
anti-aliasing filter), as in standard image resizing. The 1-D weights of each
output pixel are normalised to sum to 1 (which also handles the stamp edges),
and the result is multiplied by the pixel-area ratio ``(s_out / s_in)^2`` so
that fluxes per pixel stay in the same unit (e.g. nanomaggies per pixel) and
the total flux is conserved.

The variance of each output pixel is propagated from the input variances with
the squared weights (exact for the diagonal of the output covariance when the
input pixels are independent; the covariance between neighbouring output pixels
that interpolation creates is not represented in ``ivar``). Input pixels without
data (``ivar <= 0`` or non-finite) are left out: each output pixel is
renormalised by the weight of the valid input pixels it uses, and has no data
(``ivar = 0``) when less than ``min_coverage`` of its kernel weight (in absolute
value) falls on valid pixels.
"""

from __future__ import annotations

import numpy as np


def lanczos(x: np.ndarray, a: int = 3) -> np.ndarray:
    """The Lanczos kernel ``sinc(x) sinc(x / a)`` for ``|x| < a``, 0 outside."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < a, np.sinc(x) * np.sinc(x / a), 0.0)


def resample_matrix(n_in: int, scale_in: float, n_out: int, scale_out: float, a: int = 3) -> np.ndarray:
    """The (n_out, n_in) 1-D interpolation weights from a centred grid to another (rows sum to 1).

    ``scale_in`` and ``scale_out`` are pixel scales (arcsec/pixel).
    """
    if n_in < 1 or n_out < 1 or scale_in <= 0 or scale_out <= 0:
        raise ValueError(f"cannot resample {n_in} px of {scale_in}''/px to {n_out} px of {scale_out}''/px")
    stretch = max(1.0, scale_out / scale_in)  # anti-aliasing when the output pixels are larger
    pos_out = (np.arange(n_out) - (n_out - 1) / 2) * scale_out / scale_in + (n_in - 1) / 2  # in input pixels
    d = (np.arange(n_in)[None, :] - pos_out[:, None]) / stretch
    w = lanczos(d, a)
    total = w.sum(axis=1, keepdims=True)
    empty = np.abs(total) < 1e-12
    return np.divide(w, total, out=np.zeros_like(w), where=~empty)


def resample_stamps(
    images: np.ndarray,
    ivar: np.ndarray,
    scale_in: float,
    n_out: int,
    scale_out: float,
    min_coverage: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample stamps ``(N, B, n, n)`` with their inverse variance to ``n_out`` pixels of ``scale_out``.

    Images are in flux per pixel (any unit; the output keeps it); ``ivar`` in the
    inverse square of that unit. Returns float32 ``(images, ivar)`` of shape
    ``(N, B, n_out, n_out)``; see the module docstring for the method.
    """
    images = np.asarray(images)
    ivar = np.asarray(ivar)
    if images.ndim != 4 or images.shape != ivar.shape or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square stamps (N, B, n, n) with ivar alike, got {images.shape} and {ivar.shape}")
    n_in = images.shape[-1]
    if n_in == n_out and np.isclose(scale_in, scale_out):
        good = np.isfinite(images) & np.isfinite(ivar) & (ivar > 0)
        return np.where(good, images, 0).astype(np.float32), np.where(good, ivar, 0).astype(np.float32)
    r = resample_matrix(n_in, scale_in, n_out, scale_out)
    good = np.isfinite(images) & np.isfinite(ivar) & (ivar > 0)
    m = good.astype(np.float64)
    img = np.where(good, images, 0.0).astype(np.float64)
    var = np.divide(1.0, ivar, out=np.zeros(ivar.shape, np.float64), where=good)

    def apply(k: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.einsum("ij,nbjk,lk->nbil", k, x, k, optimize=True)

    weight = apply(r, m)  # the kernel weight on valid pixels (1 where all are valid)
    coverage = apply(np.abs(r), m) / apply(np.abs(r), np.ones_like(m[:1, :1]))
    valid = (coverage >= min_coverage) & (weight > 0.5)
    area = (scale_out / scale_in) ** 2
    safe = np.where(valid, weight, 1.0)
    out = area * apply(r, img) / safe
    out_var = area**2 * apply(r**2, var) / safe**2
    out_ivar = np.divide(1.0, out_var, out=np.zeros_like(out_var), where=valid & (out_var > 0))
    return np.where(valid, out, 0.0).astype(np.float32), out_ivar.astype(np.float32)


def resample_window(
    planes: np.ndarray,
    ivar: np.ndarray,
    scale_in: float,
    centre_xy: tuple[float, float],
    n_out: int,
    scale_out: float,
    min_coverage: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """A stamp of ``n_out`` pixels of ``scale_out`` (arcsec) centred on pixel ``centre_xy`` of larger images.

    ``planes`` and ``ivar`` are ``(B, H, W)`` (any H, W) with pixels of ``scale_in``
    arcsec, ``centre_xy`` the 0-based (x, y) pixel position of the stamp centre (from
    a WCS, sub-pixel). The method is :func:`resample_stamps`' (Lanczos-3, flux per
    pixel conserved, variances propagated); output pixels that fall outside the
    images or on too few valid input pixels have ``ivar = 0``.
    """
    planes = np.asarray(planes)
    ivar = np.asarray(ivar)
    if planes.ndim != 3 or planes.shape != ivar.shape:
        raise ValueError(f"expected images (B, H, W) with ivar alike, got {planes.shape} and {ivar.shape}")
    h, w = planes.shape[1:]

    def matrix(n_in: int, centre: float) -> tuple[np.ndarray, np.ndarray]:
        """Weights normalised by the whole kernel (inside the image or not), and the |kernel| fraction inside."""
        stretch = max(1.0, scale_out / scale_in)
        pos = (np.arange(n_out) - (n_out - 1) / 2) * scale_out / scale_in + centre
        reach = int(np.ceil(3 * stretch)) + 1
        grid = np.arange(-reach, n_in + reach)
        k_all = lanczos((grid[None, :] - pos[:, None]) / stretch)
        inside = (grid >= 0) & (grid < n_in)
        total = k_all.sum(axis=1, keepdims=True)
        k = np.divide(k_all[:, inside], total, out=np.zeros((n_out, n_in)), where=np.abs(total) > 1e-12)
        abs_all = np.abs(k_all).sum(axis=1)
        frac = np.divide(np.abs(k_all[:, inside]).sum(axis=1), abs_all, out=np.zeros(n_out), where=abs_all > 0)
        return k, frac

    (ry, fy), (rx, fx) = matrix(h, float(centre_xy[1])), matrix(w, float(centre_xy[0]))
    good = np.isfinite(planes) & np.isfinite(ivar) & (ivar > 0)
    m = good.astype(np.float64)
    img = np.where(good, planes, 0.0).astype(np.float64)
    var = np.divide(1.0, ivar, out=np.zeros(ivar.shape, np.float64), where=good)

    def apply(ky: np.ndarray, kx: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.einsum("ij,bjk,lk->bil", ky, x, kx, optimize=True)

    weight = apply(ry, rx, m)
    on_image = apply(np.abs(ry), np.abs(rx), np.ones_like(m[:1]))
    coverage = np.divide(apply(np.abs(ry), np.abs(rx), m), on_image, out=np.zeros_like(weight), where=on_image > 0)
    coverage = coverage * (fy[:, None] * fx[None, :])  # the part of the kernel beyond the image has no data
    valid = (coverage >= min_coverage) & (weight > 0.5)
    area = (scale_out / scale_in) ** 2
    safe = np.where(valid, weight, 1.0)
    out = area * apply(ry, rx, img) / safe
    out_var = area**2 * apply(ry**2, rx**2, var) / safe**2
    out_ivar = np.divide(1.0, out_var, out=np.zeros_like(out_var), where=valid & (out_var > 0))
    return np.where(valid, out, 0.0).astype(np.float32), out_ivar.astype(np.float32)
