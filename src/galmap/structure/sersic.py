"""Batched, PSF-convolved Sérsic fitting in PyTorch (the GALMOSS idea, solved with Levenberg–Marquardt).

One Sérsic profile per galaxy, its **shape shared by all bands** (centre, index n,
half-light semi-major axis Re, axis ratio q, position angle) with one total flux per
band, optionally a constant sky level per band, fitted to many galaxies at once:

* the model is the unit-flux Sérsic surface brightness
  ``S(r) = b^(2n) exp(-b (r/Re)^(1/n)) / (2 pi q Re^2 n Gamma(2n))`` with r the
  elliptical (semi-major-axis) radius, integrated over each pixel by sub-sampling
  (``oversample`` per axis everywhere, ``centre_oversample`` in the ``centre_box``
  pixels around the centre, where high-n profiles are steep), times the band flux, and
  convolved with the band's PSF image by FFT (one per band for all galaxies, or each galaxy's
  own: ``SersicFitter.fit(psf=...)``) on the smallest padded grid on which the circular
  convolution equals the linear one over the stamp (90 x 90 for 64 x 64 stamps and a 51 x 51
  PSF), one axis at a time;
* residuals are weighted by the inverse-variance map (0 on masked pixels);
* parameters are transformed to be unbounded (n, q through scaled logistic functions,
  Re and fluxes through logarithms) and solved by batched Levenberg–Marquardt with
  per-galaxy damping and convergence; the Jacobian is exact (analytic derivatives of the
  surface brightness, convolved like the model) and enters only through the normal equations
  ``J^T J``, ``J^T r``, summed band by band from its non-zero blocks (the flux and sky
  columns of a band are zero in the other bands), in chunks of galaxies on the CPU;
* uncertainties come from the covariance ``(J^T W J)^-1`` at the optimum, propagated to
  the physical parameters.

Positions are in pixels, (0, 0) the centre of the first pixel, x along columns; the
position angle is counter-clockwise from +x, in degrees; Re is in pixels here (the
pipeline converts to arcsec with the pixel scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from galmap.core.device import pick_device
from galmap.structure.flags import SERSIC_FLAGS

#: Bounds of the fitted parameters (a fit that ends within 1% of a bound is flagged).
N_RANGE = (0.3, 8.0)
Q_RANGE = (0.05, 1.0)


def sersic_b(n: torch.Tensor) -> torch.Tensor:
    """b_n such that Re encloses half the light (Ciotti & Bertin 1999 expansion, n > 0.36)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3) - 2194697 / (30690717750 * n**4)


def _fast_size(n: int) -> int:
    """The smallest 5-smooth integer >= n (a size FFTs are fast for)."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def _logistic(s: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.sigmoid(s)


def _logit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    f = np.clip((x - lo) / (hi - lo), 1e-4, 1 - 1e-4)
    return np.log(f / (1 - f))


def _covariance(jtj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-galaxy ``(J^T W J)^-1`` and a mask of galaxies where it is singular or undefined.

    Singular or non-finite matrices (a degenerate or failed fit) get NaN covariances
    instead of stopping the batch.
    """
    b, p, _ = jtj.shape
    finite = torch.isfinite(jtj).reshape(b, -1).all(1)
    safe = torch.where(finite[:, None, None], jtj, torch.eye(p, dtype=jtj.dtype, device=jtj.device))
    cov, info = torch.linalg.inv_ex(safe)
    bad = ~finite | (info != 0) | ~torch.isfinite(cov).reshape(b, -1).all(1)
    # a near-singular matrix inverts with huge or negative variances
    diag = torch.diagonal(cov, dim1=1, dim2=2)
    bad |= (diag <= 0).any(1)
    cov = torch.where(bad[:, None, None], torch.full_like(cov, float("nan")), cov)
    return cov, bad


@dataclass
class SersicFit:
    """Best-fit parameters and uncertainties for a batch (arrays of length N; fluxes N x bands)."""

    x0: np.ndarray
    y0: np.ndarray
    n: np.ndarray
    n_err: np.ndarray
    re_px: np.ndarray
    re_err_px: np.ndarray
    q: np.ndarray
    q_err: np.ndarray
    pa_deg: np.ndarray
    pa_err_deg: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    sky: np.ndarray
    chi2_nu: np.ndarray
    n_iter: np.ndarray
    flag: np.ndarray
    model: np.ndarray | None = field(default=None, repr=False)


class SersicModel:
    """Renders batches of PSF-convolved, pixel-integrated Sérsic images.

    Parameters
    ----------
    shape : (H, W) of the stamps, pixels.
    psf : (bands, P, P) PSF images (summing to 1, centred on the middle pixel).
    oversample : sub-pixels per axis everywhere (the central box is sampled more finely).
    centre_oversample : sub-pixels per axis in the central box.
    centre_box : side of the central box, pixels (odd).
    """

    def __init__(
        self,
        shape: tuple[int, int],
        psf: np.ndarray,
        oversample: int = 3,
        centre_oversample: int = 11,
        centre_box: int = 5,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.h, self.w = shape
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.os = oversample
        self.cos = centre_oversample
        self.cbox = centre_box | 1
        kw = {"device": self.device, "dtype": dtype}
        # sub-pixel grids laid out (sub-pixel, row, column): the pixel integral is a mean over dim 0
        off = (torch.arange(oversample, **kw) + 0.5) / oversample - 0.5
        oy, ox = torch.meshgrid(off, off, indexing="ij")
        self.gy = torch.arange(self.h, **kw)[None, :, None] + oy.reshape(-1, 1, 1)  # (os^2, H, 1)
        self.gx = torch.arange(self.w, **kw)[None, None, :] + ox.reshape(-1, 1, 1)  # (os^2, 1, W)
        coff = (torch.arange(centre_oversample, **kw) + 0.5) / centre_oversample - 0.5
        base = torch.arange(self.cbox, **kw) - self.cbox // 2
        cy, cx = torch.meshgrid(coff, coff, indexing="ij")
        # offsets from the centre pixel, (sub-pixel, row, column) of the central box
        self.cgy = base[None, :, None] + cy.reshape(-1, 1, 1)  # (cos^2, box, 1)
        self.cgx = base[None, None, :] + cx.reshape(-1, 1, 1)  # (cos^2, 1, box)
        psf_t = torch.as_tensor(np.asarray(psf), **kw)
        self.nb, p, _ = psf_t.shape
        self.psf_size = p
        self.crop = p // 2
        # the (circular) FFT convolution is exact on the stamp once the padded size keeps the linear
        # convolution's far ends (P - 1 - crop past the stamp, crop before it) off the stamp's pixels
        self.fh = _fast_size(max(p, self.h + self.crop, self.h + p - 1 - self.crop))
        self.fw = _fast_size(max(p, self.w + self.crop, self.w + p - 1 - self.crop))
        self.psf_fft = self.psf_spectrum(psf_t)  # (bands, fh, fw//2+1)

    def psf_spectrum(self, psf: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The FFT of PSF images (..., bands, P, P) of the model's size P, on the model's padded grid."""
        psf_t = torch.as_tensor(np.asarray(psf), device=self.device, dtype=self.dtype)
        if psf_t.shape[-3:] != (self.nb, self.psf_size, self.psf_size):
            raise ValueError(
                f"PSF images of shape {tuple(psf_t.shape[-3:])}, the model's are ({self.nb}, {self.psf_size}, "
                f"{self.psf_size})"
            )
        return torch.fft.rfft2(psf_t, s=(self.fh, self.fw))

    def _surface(self, x, y, xc, yc, n, re, q, pa, derivs: bool = False) -> torch.Tensor:
        """Unit-flux Sérsic surface brightness (per pixel area) at points (x, y), batched.

        ``x`` (..., S, 1, W) and ``y`` (..., S, H, 1): the points' columns and rows (a grid: the
        brightness is computed on their broadcast, (B, S, H, W)); the shape parameters are
        (B, 1, 1, 1) tensors. With ``derivs`` returns (B, 7, S, H, W): the brightness and its
        analytic derivatives with respect to xc, yc, n, re, q, pa.
        """
        c, s = torch.cos(pa), torch.sin(pa)
        dx, dy = x - xc, y - yc  # small: one row, one column per sub-pixel
        u = dx * c + dy * s  # along the major axis
        v = dy * (c / q) - dx * (s / q)  # along the minor axis, stretched by 1/q
        r2 = u * u
        r2.addcmul_(v, v).add_(1e-12)
        lr2 = torch.log(r2)
        b = sersic_b(n)
        rho_n = torch.addcmul(-torch.log(re) / n, lr2, 0.5 / n).exp_()  # (r/Re)^(1/n)
        norm = 2 * n * torch.log(b) - torch.log(2 * math.pi * q * re * re * n) - torch.lgamma(2 * n)
        if not derivs:
            return torch.addcmul(norm, rho_n, -b).exp_()
        out = torch.empty((r2.shape[0], 7, *r2.shape[1:]), dtype=r2.dtype, device=r2.device)
        sb = torch.exp(torch.addcmul(norm, rho_n, -b), out=out[:, 0])
        # d log S / d r = -b rho_n / (n r); with gs = S (d log S / d r) / r:
        # d/dxc = gs (v s / q - u c), d/dyc = -gs (u s + v c / q), d/dpa = gs u v (q - 1/q),
        # d/dq = -(gs v^2 + S) / q, d/dre = S (b rho_n / (n Re) - 2 / Re),
        # d/dn = S (dn0 + rho_n (b log(r/Re) / n^2 - db/dn))
        sbr = sb * rho_n
        gs = sbr / r2
        gs.mul_(-b / n)
        gsu, gsv = gs * u, gs * v
        torch.mul(gsv, s / q, out=out[:, 1]).addcmul_(gsu, -c)
        torch.mul(gsu, -s, out=out[:, 2]).addcmul_(gsv, -c / q)
        db = 2 - 4 / (405 * n**2) - 92 / (25515 * n**3) - 393 / (1148175 * n**4) + 8778788 / (30690717750 * n**5)
        dn0 = 2 * torch.log(b) + 2 * n * db / b - 1 / n - 2 * torch.digamma(2 * n)
        torch.mul(lr2, 0.5 * b / n**2, out=out[:, 3]).add_(-torch.log(re) * b / n**2 - db).mul_(sbr)
        out[:, 3].addcmul_(sb, dn0)
        torch.mul(sbr, b / (n * re), out=out[:, 4]).addcmul_(sb, -2 / re)
        torch.addcmul(sb, gsv, v, out=out[:, 5]).mul_(-1 / q)
        torch.mul(gsu, v, out=out[:, 6]).mul_(q - 1 / q)
        return out

    def shape_image(self, xc, yc, n, re, q, pa, derivs: bool = False) -> torch.Tensor:
        """Pixel-integrated unit-flux images (B, H, W) of the Sérsic shapes.

        With ``derivs``: (B, 7, H, W), the images and their derivatives (see :meth:`_surface`).
        """
        bsz = xc.shape[0]
        k = 7 if derivs else 1
        view = (bsz, 1, 1, 1)
        args = [t.view(view) for t in (xc, yc, n, re, q, pa)]
        fine = self._surface(self.gx, self.gy, *args, derivs=derivs)
        img = fine.reshape(bsz, k, self.os * self.os, self.h * self.w).mean(dim=2)
        # replace the central box with a finer sampling (steep cusps of high-n profiles)
        half = self.cbox // 2
        icx = torch.clamp(torch.round(xc.detach()).long(), half, self.w - 1 - half)
        icy = torch.clamp(torch.round(yc.detach()).long(), half, self.h - 1 - half)
        px = icx.view(view).to(self.dtype) + self.cgx  # (B, cos^2, 1, box)
        py = icy.view(view).to(self.dtype) + self.cgy  # (B, cos^2, box, 1)
        patch = self._surface(px, py, *args, derivs=derivs)
        patch = patch.reshape(bsz, k, self.cos * self.cos, self.cbox * self.cbox).mean(dim=2)
        base = torch.arange(self.cbox, device=self.device) - half
        rows = (icy.view(bsz, 1, 1) + base.view(1, -1, 1)).expand(bsz, self.cbox, self.cbox)
        cols = (icx.view(bsz, 1, 1) + base.view(1, 1, -1)).expand(bsz, self.cbox, self.cbox)
        idx = (rows * self.w + cols).reshape(bsz, 1, -1).expand(bsz, k, -1)
        out = img.scatter_(2, idx, patch).view(bsz, k, self.h, self.w)
        return out if derivs else out[:, 0]

    def convolve(self, images: torch.Tensor, psf_fft: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve (B, K, H, W) single-band images with every band's PSF: (B, K, bands, H, W).

        ``psf_fft``: each galaxy's own PSF spectra (B, bands, ...: :meth:`psf_spectrum`); ``None``:
        the model's, shared by all. The 2-d FFTs are done one axis at a time, transforming only
        the stamp's rows forward and keeping only them before the last inverse transform.
        """
        spec = torch.fft.rfft(images, n=self.fw, dim=-1)
        spec = torch.fft.fft(spec, n=self.fh, dim=-2)
        kernel = self.psf_fft[None, None] if psf_fft is None else psf_fft[:, None]
        conv = torch.fft.ifft(spec[:, :, None] * kernel, dim=-2)[..., self.crop : self.crop + self.h, :]
        return torch.fft.irfft(conv, n=self.fw, dim=-1)[..., self.crop : self.crop + self.w]

    def render(self, xc, yc, n, re, q, pa, flux, sky=None, psf_fft=None) -> torch.Tensor:
        """PSF-convolved model images (B, bands, H, W); ``flux`` is (B, bands), ``sky`` (B, bands);
        ``psf_fft`` as in :meth:`convolve`."""
        conv = self.convolve(self.shape_image(xc, yc, n, re, q, pa)[:, None], psf_fft)[:, 0]
        out = conv * flux[:, :, None, None]
        if sky is not None:
            out = out + sky[:, :, None, None]
        return out


def initial_guess(images: np.ndarray, ivar: np.ndarray, segmap: np.ndarray | None) -> dict[str, np.ndarray]:
    """Starting parameters from the image moments inside the segment (or the whole stamp).

    Returns centre (pixels), Re (pixels, from the half-light radius of the growth curve
    along the moment ellipse), q and position angle (radians) from second moments,
    n = 2, and per-band fluxes (sum inside the segment, at least 1e-3 of the total).
    """
    b, nb, h, w = images.shape
    yy, xx = np.mgrid[:h, :w]
    det = np.sum(np.where(ivar > 0, images, 0.0), axis=1)
    sel = segmap.astype(bool) if segmap is not None else np.ones((b, h, w), bool)
    sel = sel & (det > 0)
    empty = sel.reshape(b, -1).sum(1) < 3
    sel[empty] = det[empty] > 0
    wgt = np.where(sel, det, 0.0)
    tot = wgt.reshape(b, -1).sum(1)
    tot = np.where(tot > 0, tot, 1.0)
    x0 = (wgt * xx).reshape(b, -1).sum(1) / tot
    y0 = (wgt * yy).reshape(b, -1).sum(1) / tot
    dx, dy = xx[None] - x0[:, None, None], yy[None] - y0[:, None, None]
    mxx = (wgt * dx * dx).reshape(b, -1).sum(1) / tot
    myy = (wgt * dy * dy).reshape(b, -1).sum(1) / tot
    mxy = (wgt * dx * dy).reshape(b, -1).sum(1) / tot
    tr = mxx + myy
    diff = np.sqrt((mxx - myy) ** 2 + 4 * mxy**2)
    lam1, lam2 = (tr + diff) / 2, np.maximum((tr - diff) / 2, 1e-6)
    q = np.clip(np.sqrt(lam2 / np.maximum(lam1, 1e-6)), 0.1, 0.98)
    pa = 0.5 * np.arctan2(2 * mxy, mxx - myy)
    # half-light semi-major axis from the elliptical growth curve inside the segment
    c, s = np.cos(pa)[:, None, None], np.sin(pa)[:, None, None]
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / q[:, None, None]
    r = np.sqrt(u**2 + v**2).reshape(b, -1)
    f = wgt.reshape(b, -1)
    re = np.empty(b)
    for i in range(b):
        order = np.argsort(r[i])
        cum = np.cumsum(f[i][order])
        k = int(np.searchsorted(cum, 0.5 * cum[-1])) if cum[-1] > 0 else 0
        re[i] = r[i][order][min(k, len(order) - 1)]
    re = np.clip(re, 0.7, max(h, w))
    flux = np.sum(np.where(sel[:, None] & (ivar > 0), images, 0.0), axis=(2, 3))
    flux = np.maximum(flux, 1e-3 * np.maximum(flux.max(axis=1, keepdims=True), 1e-6))
    return {
        "x0": np.where(empty, (w - 1) / 2, x0),
        "y0": np.where(empty, (h - 1) / 2, y0),
        "n": np.full(b, 2.0),
        "re": re,
        "q": q,
        "pa": pa,
        "flux": flux,
    }


class SersicFitter:
    """Fits single Sérsic profiles to batches of multi-band stamps with Levenberg–Marquardt.

    Parameters
    ----------
    psf : (bands, P, P) PSF images of the survey (summing to 1).
    shape : (H, W) of the stamps.
    fit_sky : also fit a constant sky level per band.
    max_iter : iteration limit (tens, not thousands).
    tol : convergence when an accepted step lowers chi2 by less than ``tol`` (absolute).
    device : ``None`` picks ``cuda`` when available, else the CPU.
    dtype : precision of the model images and Jacobian (float32 by default: twice as fast;
        chi2, the normal equations and the parameters are always float64).
    """

    def __init__(
        self,
        psf: np.ndarray,
        shape: tuple[int, int],
        fit_sky: bool = False,
        max_iter: int = 40,
        tol: float = 0.01,
        oversample: int = 2,
        centre_oversample: int = 11,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.device = pick_device(device)
        self.model = SersicModel(
            shape, psf, oversample=oversample, centre_oversample=centre_oversample, device=self.device, dtype=dtype
        )
        self.nb = self.model.nb
        self.fit_sky = fit_sky
        self.max_iter = max_iter
        self.tol = tol
        self.n_par = 6 + self.nb * (2 if fit_sky else 1)
        #: galaxies per chunk of the Jacobian on the CPU (:meth:`_normal_equations`)
        self.cpu_chunk = 16

    # -- parameter transforms -------------------------------------------------------------
    def _physical(self, t: torch.Tensor):
        t = t.to(self.model.dtype)
        nb = self.nb
        xc, yc = t[:, 0], t[:, 1]
        n = _logistic(t[:, 2], *N_RANGE)
        re = torch.exp(t[:, 3])
        q = _logistic(t[:, 4], *Q_RANGE)
        pa = t[:, 5]
        flux = torch.exp(t[:, 6 : 6 + nb])
        sky = t[:, 6 + nb : 6 + 2 * nb] if self.fit_sky else None
        return xc, yc, n, re, q, pa, flux, sky

    def _residuals(self, t, data, sqrt_w, psf_fft=None):
        res = (self.model.render(*self._physical(t), psf_fft=psf_fft) - data) * sqrt_w
        return res.reshape(t.shape[0], -1).to(torch.float64)

    def _columns(self, t, data, sqrt_w, psf_fft=None):
        """Weighted residuals and the Jacobian's non-zero blocks, all (B, ...) in the model dtype.

        Returns ``res`` (B, bands, H*W); ``shape`` (B, 6, bands, H*W), the columns of the shape
        parameters; ``flux`` (B, bands, H*W), column ``6 + b`` restricted to band b (it is zero in
        the others); ``sky`` (B, bands, H*W) likewise for the sky columns, or ``None``. The
        Jacobian is exact (analytic derivatives through the chain rule to the unbounded parameters).
        """
        xc, yc, n, re, q, pa, flux, sky = self._physical(t)
        conv = self.model.convolve(self.model.shape_image(xc, yc, n, re, q, pa, derivs=True), psf_fft)
        bsz = t.shape[0]
        conv = conv.reshape(bsz, 7, self.nb, -1)
        w = sqrt_w.reshape(bsz, self.nb, -1)
        unit_w = conv[:, 0] * (flux[:, :, None] * w)  # d model / d log(flux_b) in band b, weighted
        model = conv[:, 0] * flux[:, :, None]
        if sky is not None:
            model = model + sky[:, :, None]
        res = (model - data.reshape(bsz, self.nb, -1)) * w
        # chain rule to the unbounded parameters
        dn = (n - N_RANGE[0]) * (N_RANGE[1] - n) / (N_RANGE[1] - N_RANGE[0])
        dq = (q - Q_RANGE[0]) * (Q_RANGE[1] - q) / (Q_RANGE[1] - Q_RANGE[0])
        one = torch.ones_like(n)  # model dtype
        scale = torch.stack([one, one, dn, re, dq, one], dim=1)
        shape = conv[:, 1:] * (flux[:, None, :, None] * scale[:, :, None, None]) * w[:, None]
        return res, shape, unit_w, (w if sky is not None else None)

    def _jacobian(self, t, data, sqrt_w, psf_fft=None):
        """Weighted residuals (B, M) and their exact Jacobian (B, M, P), dense, float64 (:meth:`_columns`)."""
        res, shape, flux, sky = self._columns(t, data, sqrt_w, psf_fft)
        bsz, nb, m = res.shape
        eye = torch.eye(nb, dtype=res.dtype, device=res.device)[None, :, :, None]
        cols = [shape, eye * flux[:, None]] + ([] if sky is None else [eye * sky[:, None]])
        jac = torch.cat(cols, dim=1).reshape(bsz, self.n_par, nb * m).transpose(1, 2)
        return res.reshape(bsz, -1).to(torch.float64), jac.to(torch.float64)

    def _normal_equations(self, t, data, sqrt_w, psf_fft=None):
        """``J^T J`` (B, P, P), ``J^T r`` (B, P) and chi2 (B,), float64, from the Jacobian's blocks.

        The products of the (model dtype) columns are summed in float64, band by band: a flux
        or sky column only meets the shape columns and the other columns of its band. On the CPU
        the galaxies go through in chunks of :attr:`cpu_chunk` (their images then stay in the
        cache: about twice as fast as the whole batch at once).
        """
        chunk = max(1, t.shape[0] if self.device.type != "cpu" else self.cpu_chunk)
        parts = [
            self._normal_chunk(
                t[i : i + chunk], data[i : i + chunk], sqrt_w[i : i + chunk],
                None if psf_fft is None else psf_fft[i : i + chunk],
            )
            for i in range(0, t.shape[0], chunk)
        ]  # fmt: skip
        return tuple(torch.cat(x) for x in zip(*parts, strict=True))

    def _normal_chunk(self, t, data, sqrt_w, psf_fft=None):
        res, shape, flux, sky = self._columns(t, data, sqrt_w, psf_fft)
        bsz, nb, _ = res.shape
        blocks = [shape.transpose(1, 2), flux[:, :, None]] + ([] if sky is None else [sky[:, :, None]])
        cols = torch.cat(blocks + [res[:, :, None]], dim=2).to(torch.float64)  # (B, bands, K, H*W)
        gram = cols @ cols.transpose(2, 3)  # (B, bands, K, K), per band
        k = gram.shape[-1] - 1  # the residual's row
        jtj = torch.zeros((bsz, self.n_par, self.n_par), dtype=torch.float64, device=res.device)
        grad = torch.zeros((bsz, self.n_par), dtype=torch.float64, device=res.device)
        jtj[:, :6, :6] = gram[:, :, :6, :6].sum(1)
        grad[:, :6] = gram[:, :, :6, k].sum(1)
        ar = torch.arange(nb, device=res.device)
        for j in range(6, k):  # the flux (and sky) column of each band
            for i in range(6, k):
                jtj[:, 6 + (i - 6) * nb + ar, 6 + (j - 6) * nb + ar] = gram[:, :, i, j]
            cj = 6 + (j - 6) * nb + ar
            jtj[:, :6, cj] = gram[:, :, :6, j].transpose(1, 2)
            jtj[:, cj, :6] = gram[:, :, j, :6]
            grad[:, cj] = gram[:, :, j, k]
        return jtj, grad, gram[:, :, k, k].sum(1)

    def fit(
        self,
        images: np.ndarray,
        ivar: np.ndarray,
        segmap: np.ndarray | None = None,
        return_model: bool = False,
        psf: np.ndarray | None = None,
    ) -> SersicFit:
        """Fit every stamp of ``images`` (B, bands, H, W) weighted by ``ivar``; returns a :class:`SersicFit`.

        ``psf``: each galaxy's own PSF images (B, bands, P, P; each summing to 1, of the fitter's
        PSF size P) in place of the fitter's one PSF per band.
        """
        b = images.shape[0]
        pf = None if psf is None else self.model.psf_spectrum(psf)
        if pf is not None and pf.shape[0] != b:
            raise ValueError(f"{pf.shape[0]} PSFs for {b} galaxies")
        kw = {"device": self.device, "dtype": torch.float64}
        mkw = {"device": self.device, "dtype": self.model.dtype}
        images = np.nan_to_num(np.asarray(images, np.float64))
        ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0).astype(np.float64)
        guess = initial_guess(images, ivar, segmap)
        t0 = [guess["x0"], guess["y0"], _logit(guess["n"], *N_RANGE), np.log(guess["re"])]
        t0 += [_logit(guess["q"], *Q_RANGE), guess["pa"]]
        cols = np.column_stack(t0 + [np.log(guess["flux"])] + ([np.zeros((b, self.nb))] if self.fit_sky else []))
        t = torch.as_tensor(cols, **kw)
        data = torch.as_tensor(images, **mkw)
        sqrt_w = torch.sqrt(torch.as_tensor(ivar, **mkw))
        n_pix = (ivar > 0).reshape(b, -1).sum(1)
        lam = torch.full((b,), 1e-2, **kw)
        active = torch.ones(b, dtype=torch.bool, device=self.device)
        n_iter = np.zeros(b, int)
        eye = torch.eye(self.n_par, **kw)
        with torch.no_grad():
            chi2 = (self._residuals(t, data, sqrt_w, pf) ** 2).sum(1)
        for it in range(self.max_iter):
            idx = torch.nonzero(active).flatten()
            if len(idx) == 0:
                break
            ta, da, wa = t[idx], data[idx], sqrt_w[idx]
            psf_a = None if pf is None else pf[idx]
            jtj, grad, _ = self._normal_equations(ta, da, wa, psf_a)
            diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-12)
            accepted = torch.zeros(len(idx), dtype=torch.bool, device=self.device)
            new_chi2 = chi2[idx].clone()
            la = lam[idx].clone()
            t_new = ta.clone()
            # try up to 6 damping levels per iteration, per galaxy
            for _ in range(6):
                todo = ~accepted
                if not todo.any():
                    break
                a = jtj[todo] + la[todo, None, None] * torch.diag_embed(diag[todo]) + 1e-12 * eye
                step = torch.linalg.solve(a, -grad[todo])
                trial = ta[todo] + step
                trial[:, 5] = torch.remainder(trial[:, 5], math.pi)  # position angle modulo 180 deg
                with torch.no_grad():
                    psf_t = None if psf_a is None else psf_a[todo]
                    c2 = (self._residuals(trial, da[todo], wa[todo], psf_t) ** 2).sum(1)
                ok = torch.isfinite(c2) & (c2 <= chi2[idx][todo])
                sub = torch.nonzero(todo).flatten()
                good = sub[ok]
                t_new[good] = trial[ok]
                new_chi2[good] = c2[ok]
                accepted[good] = True
                la[sub[ok]] = la[sub[ok]] / 3
                la[sub[~ok]] = la[sub[~ok]] * 4
            drop = chi2[idx] - new_chi2
            t[idx] = t_new
            chi2[idx] = new_chi2
            lam[idx] = la.clamp(1e-9, 1e9)
            n_iter[idx.cpu().numpy()] = it + 1
            # converged: an accepted step lowered chi2 by less than ``tol`` (absolute: the
            # parameters then move by ~sqrt(tol) of their uncertainty), or no step helps
            done = (accepted & (drop < self.tol)) | (~accepted & (la >= 1e8))
            active[idx[done]] = False
        return self._finish(t, data, sqrt_w, chi2, n_pix, n_iter, active, guess, return_model, pf)

    def _finish(self, t, data, sqrt_w, chi2, n_pix, n_iter, active, guess, return_model, pf=None) -> SersicFit:
        b = t.shape[0]
        jtj, _, _ = self._normal_equations(t, data, sqrt_w, pf)
        cov, sing = _covariance(jtj)
        var_t = torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0)
        xc, yc, n, re, q, pa, flux, sky = self._physical(t)
        # delta method: d(physical)/d(transformed)
        dn = (n - N_RANGE[0]) * (N_RANGE[1] - n) / (N_RANGE[1] - N_RANGE[0])
        dq = (q - Q_RANGE[0]) * (Q_RANGE[1] - q) / (Q_RANGE[1] - Q_RANGE[0])
        sd = torch.sqrt(var_t)
        nb = self.nb
        dof = np.maximum(n_pix - self.n_par, 1)
        to = lambda x: x.detach().cpu().numpy()  # noqa: E731
        flag = np.zeros(b, np.int64)
        flag[to(active)] |= SERSIC_FLAGS["not_converged"]
        n_np, q_np, re_np = to(n), to(q), to(re)
        at_bound = (
            (n_np < N_RANGE[0] * 1.01)
            | (n_np > N_RANGE[1] * 0.99)
            | (q_np < Q_RANGE[0] * 1.01)
            | (re_np > max(self.model.h, self.model.w))
        )
        flag[at_bound] |= SERSIC_FLAGS["at_bound"]
        flag[n_pix < 10 * self.n_par] |= SERSIC_FLAGS["few_pixels"]
        flag[to(sing)] |= SERSIC_FLAGS["bad_covariance"]
        no_data = (n_pix == 0) | (guess["flux"].max(axis=1) <= 1e-6)
        flag[no_data] |= SERSIC_FLAGS["no_data"]
        model = None
        if return_model:
            with torch.no_grad():
                model = to(self.model.render(xc, yc, n, re, q, pa, flux, sky, psf_fft=pf))
        return SersicFit(
            x0=to(xc),
            y0=to(yc),
            n=n_np,
            n_err=to(sd[:, 2] * dn),
            re_px=re_np,
            re_err_px=to(sd[:, 3] * re),
            q=q_np,
            q_err=to(sd[:, 4] * dq),
            pa_deg=np.degrees(to(pa)) % 180.0,
            pa_err_deg=np.degrees(to(sd[:, 5])),
            flux=to(flux),
            flux_err=to(sd[:, 6 : 6 + nb] * flux),
            sky=to(sky) if sky is not None else np.zeros((b, nb)),
            chi2_nu=to(chi2) / dof,
            n_iter=n_iter,
            flag=flag,
            model=model,
        )
