"""The per-pixel loss of the image-to-image networks (Hα U-Net, super-resolution regression, diffusion)."""

from __future__ import annotations

import torch


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(weight * (pred - target)^2)`` over the pixels with data (``weight > 0``), divided by their number.

    ``weight`` is typically an inverse variance on the network's scale (a χ² per pixel)
    or a boolean mask (the plain masked mean squared error); pixels of weight 0 do not
    count. The target is zeroed there first, so a NaN in a pixel without data reaches
    neither the sum nor the gradient.
    """
    valid = weight > 0
    target = torch.where(valid, target, torch.zeros_like(target))
    err = torch.where(valid, weight * (pred - target) ** 2, torch.zeros_like(pred))
    return err.sum() / valid.sum().clamp(min=1)
