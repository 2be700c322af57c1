"""The per-pixel loss of the image-to-image networks (Hα U-Net, super-resolution regression, diffusion)."""

from __future__ import annotations

import numpy as np
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


def loss_weights(weight: torch.Tensor, split: np.ndarray, power: float) -> torch.Tensor:
    """Per-pixel loss weights ``weight ** power`` (0 where ``weight`` is 0), scaled to mean 1 over the training pixels.

    ``weight`` (N, C, H, W) is each pixel's inverse variance on the network's scale (0 without
    data), ``split`` (N,) the galaxies' splits. ``power`` 0 gives 1 on every pixel with data
    (the plain masked mean), 1 the inverse variance (a χ²). The scale keeps the learning
    rate meaning the same whatever the power.
    """
    if power < 0:
        raise ValueError(f"loss_weight_power must be >= 0, not {power}")
    valid = weight > 0
    w = torch.where(valid, weight.clamp(min=torch.finfo(weight.dtype).tiny) ** power, torch.zeros_like(weight))
    train = torch.as_tensor(np.asarray(split) == "train")[:, None, None, None].expand_as(w) & valid
    mean = float(w[train].double().mean()) if bool(train.any()) else 1.0
    return w / mean if mean > 0 else w
