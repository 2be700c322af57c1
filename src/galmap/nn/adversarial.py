"""Gradient reversal (Ganin & Lempitsky 2015): the piece every adversarial objective shares.

A discriminator behind :func:`reverse_gradient` learns to tell something (the domain, the
survey) from features, while the network before it receives the opposite gradient and learns
to hide it. Used by the domain stage's DANN (:mod:`galmap.domain.adaptation`) and the unified
stage's survey adversary (:mod:`galmap.unified.model`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``-strength`` in the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = float(strength)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """:class:`GradientReversal` applied to ``x``."""
    return GradientReversal.apply(x, strength)


def reversal_strength(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule ``2 / (1 + exp(-gamma p)) - 1``: 0 at the start of training, -> 1 at the end."""
    return float(2.0 / (1.0 + np.exp(-gamma * float(np.clip(progress, 0.0, 1.0)))) - 1.0)
