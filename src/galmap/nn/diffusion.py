"""Conditional denoising diffusion: a noise schedule, the training loss and a DDIM sampler.

The forward process mixes a clean image ``x0`` with Gaussian noise ``eps``,
``x_t = alpha(t) x0 + sigma(t) eps`` with ``alpha^2 + sigma^2 = 1`` and the cosine
schedule of Nichol & Dhariwal (2021), ``alpha(t)^2 = cos^2(pi/2 (t + s)/(1 + s)) /
cos^2(pi/2 s/(1 + s))`` for continuous ``t`` in [0, 1] (``s = 0.008``; ``alpha^2`` is
clipped to [1e-5, 1 - 1e-5]). The denoiser (a :class:`galmap.nn.unet.UNet` with a time
embedding) sees ``x_t`` concatenated with the conditioning images and predicts
``v = alpha eps - sigma x0`` (Salimans & Ho 2022), which is well scaled at every
``t``; the training loss is the mean squared error of ``v`` over the **valid** pixels
only (weight 0: pixels without data never reach the loss), optionally weighted per
pixel (e.g. by the pixel's signal-to-noise, :mod:`galmap.images2images.superres`). A weight that
does not depend on the prediction leaves each pixel's optimum where it was (the
conditional mean of ``v``); it decides where a small, briefly trained network spends
its capacity.

Sampling uses DDIM (Song et al. 2021) on ``steps`` evenly spaced times from 1 to 0:
``eta = 0`` is deterministic given the starting noise, ``eta = 1`` is ancestral
(DDPM-like). Different starting noise gives different draws of the conditional
distribution; their spread is the model's uncertainty.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from galmap.nn.losses import weighted_mse
from galmap.nn.training import seeded_generator

COSINE_OFFSET = 0.008
ALPHA2_RANGE = (1e-5, 1.0 - 1e-5)


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha(t)`` and ``sigma(t)`` of the cosine schedule (``t`` in [0, 1]; any shape)."""
    s = COSINE_OFFSET
    f = torch.cos(0.5 * math.pi * (t + s) / (1 + s)) ** 2 / math.cos(0.5 * math.pi * s / (1 + s)) ** 2
    a2 = f.clamp(*ALPHA2_RANGE)
    return torch.sqrt(a2), torch.sqrt(1 - a2)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The noisy image ``x_t = alpha(t) x0 + sigma(t) eps`` (times ``t`` of shape (N,))."""
    a, s = alpha_sigma(t)
    return _expand(a, x0) * x0 + _expand(s, x0) * eps


def diffusion_loss(
    model: nn.Module,
    x0: torch.Tensor,
    cond: torch.Tensor,
    weight: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Weighted v-prediction loss of one batch: ``sum(weight * (v - v_true)^2)`` / the number of pixels with data.

    Parameters
    ----------
    model : the denoiser, ``model(cat([x_t, cond]), t) -> v``.
    x0 : clean targets (N, C, H, W); their values where ``weight`` is 0 are ignored (set to 0).
    cond : conditioning images (N, Cc, H, W) on the target's grid.
    weight : per-pixel weights (N, C, H, W), >= 0; 0 (or false, for a boolean mask) on the pixels
        without data, which do not enter the loss. A boolean mask gives the plain masked mean.
    generator : the source of ``t`` and the noise (seeded: reproducible).
    """
    n = x0.shape[0]
    valid = weight > 0
    # pixels without data are zeroed (a NaN there must not reach x_t, and through the network, other pixels)
    x0 = torch.where(valid, x0, torch.zeros_like(x0))
    t = torch.rand(n, generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    a, s = alpha_sigma(t)
    xt = _expand(a, x0) * x0 + _expand(s, x0) * eps
    v_true = _expand(a, x0) * eps - _expand(s, x0) * x0
    v = model(torch.cat([xt, cond], dim=1), t)
    return weighted_mse(v, v_true, weight)


@torch.no_grad()
def ddim_sample(
    model: nn.Module,
    cond: torch.Tensor,
    out_channels: int,
    steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draws (N, out_channels, H, W) given ``cond`` (N, Cc, H, W) with ``steps`` DDIM steps.

    ``noise`` (optional) is the starting ``x_1``; otherwise it is drawn from ``generator``.
    With ``eta = 0`` the result is a deterministic function of the starting noise.
    """
    if steps < 1:
        raise ValueError(f"ddim_sample: steps must be >= 1, not {steps}")
    n, _, h, w = cond.shape
    shape = (n, out_channels, h, w)
    x = noise.clone() if noise is not None else torch.randn(shape, generator=generator, device=cond.device)
    times = torch.linspace(1.0, 0.0, steps + 1, device=cond.device)
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        a, s = alpha_sigma(t)
        a_next, s_next = alpha_sigma(t_next)
        v = model(torch.cat([x, cond], dim=1), t.expand(n))
        x0 = a * x - s * v
        eps = s * x + a * v
        if i == steps - 1:
            x = x0
            break
        # DDIM: sigma_eta interpolates between deterministic (0) and ancestral (1) sampling
        sig = eta * torch.sqrt((s_next**2 / s**2) * (1 - a**2 / a_next**2)).clamp(min=0)
        dir_coef = torch.sqrt((s_next**2 - sig**2).clamp(min=0))
        x = a_next * x0 + dir_coef * eps
        if eta > 0:
            x = x + sig * torch.randn(shape, generator=generator, device=cond.device)
    return x


def sample_draws(
    model: nn.Module,
    cond: torch.Tensor,
    out_channels: int,
    n_draws: int,
    steps: int,
    eta: float,
    seed: int,
    batch_size: int = 64,
) -> np.ndarray:
    """``n_draws`` DDIM draws per galaxy of ``cond`` (N, Cc, H, W): (n_draws, N, out_channels, H, W), network scale.

    All draws of a galaxy are sampled in one batch (its condition repeated ``n_draws`` times,
    ``max(1, batch_size // n_draws)`` galaxies per batch), so a galaxy's draws differ only by
    their starting noise. Seeded (``seed``): the same call gives the same draws. The model
    stays on its device; ``cond`` is moved there a batch at a time.
    """
    device = next(model.parameters()).device
    gen = seeded_generator(seed, 7, device=device)
    out = np.empty((n_draws, cond.shape[0], out_channels, *cond.shape[-2:]), np.float32)
    per = max(1, batch_size // max(n_draws, 1))
    for start in range(0, cond.shape[0], per):
        c = cond[start : start + per].to(device)
        k = len(c)
        x = ddim_sample(model, c.repeat_interleave(n_draws, 0), out_channels, steps, eta, gen)
        out[:, start : start + k] = x.view(k, n_draws, *x.shape[1:]).transpose(0, 1).cpu().numpy()
    return out
