"""The per-pixel loss of the image-to-image networks."""

from __future__ import annotations

import pytest
import torch

from galmap.nn.losses import weighted_mse


def test_weighted_mse_weights_pixels_and_ignores_pixels_without_data():
    y = torch.zeros(1, 1, 2, 2)
    pred = torch.ones(1, 1, 2, 2)
    w = torch.tensor([[[[1.0, 2.0], [1.0, 0.0]]]])
    assert float(weighted_mse(pred, y, w)) == pytest.approx((1 + 2 + 1) / 3)
    assert float(weighted_mse(pred, y, w > 0)) == pytest.approx(1.0)  # a boolean mask: the masked mean
    bad = y.clone()
    bad[0, 0, 1, 1] = float("nan")
    pred.requires_grad_(True)
    loss = weighted_mse(pred, bad, w)
    loss.backward()
    assert loss.item() == pytest.approx(4 / 3) and torch.isfinite(pred.grad).all()
