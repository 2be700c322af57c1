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
