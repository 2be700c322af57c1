"""A conditional normalizing flow p(latents | parameters), built with nflows.

The flow is a stack of ``num_layers`` masked affine autoregressive transforms
(MAF; each a MADE with ``num_blocks`` residual blocks of ``hidden_features``
units that also sees the context), separated by reversals of the feature order,
over a standard normal base distribution. Both sides are standardised with the
training set's mean and standard deviation: the latents (the VAE's latent means,
``mu_*``) and the context (the parameters of :mod:`galmap.structure.parameters`, with
:data:`~galmap.structure.parameters.LOG_PARAMETERS` as log10). Log-probabilities are
reported in nats per latent dimension of the *standardised* latents.

Sampling takes its base noise from the caller (a seeded generator, or zeros for
the flow's "central" latent of a context), so generated galaxies are
reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
from nflows.transforms.base import CompositeTransform
from nflows.transforms.permutations import ReversePermutation
from torch import nn

from galmap.core.device import pick_device
from galmap.nn.training import TrainSettings, derived_seed, load_model, save_model, seeded_generator, train
from galmap.structure.parameters import LOG_PARAMETERS

log = logging.getLogger("galmap")


class ConditionalFlow(nn.Module):
    """p(latents | parameters) with standardisation built in (see the module docstring)."""

    def __init__(
        self,
        features: int,
        parameters: Sequence[str],
        hidden_features: int = 64,
        num_layers: int = 5,
        num_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.features = int(features)
        self.parameters_ = [str(p) for p in parameters]
        self.hidden_features, self.num_layers, self.num_blocks = int(hidden_features), int(num_layers), int(num_blocks)
        ctx = len(self.parameters_)
        layers: list[nn.Module] = []
        for _ in range(self.num_layers):
            layers.append(
                MaskedAffineAutoregressiveTransform(
                    features=self.features,
                    hidden_features=self.hidden_features,
                    context_features=ctx,
                    num_blocks=self.num_blocks,
                )
            )
            layers.append(ReversePermutation(features=self.features))
        self.flow = Flow(CompositeTransform(layers), StandardNormal([self.features]))
        self.register_buffer("z_mean", torch.zeros(self.features))
        self.register_buffer("z_std", torch.ones(self.features))
        self.register_buffer("c_mean", torch.zeros(ctx))
        self.register_buffer("c_std", torch.ones(ctx))
        self.register_buffer("log_mask", torch.tensor([p in LOG_PARAMETERS for p in self.parameters_]))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (stored with the weights)."""
        return {
            "features": self.features,
            "parameters": list(self.parameters_),
            "hidden_features": self.hidden_features,
            "num_layers": self.num_layers,
            "num_blocks": self.num_blocks,
        }

    def context_scale(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters (N, P) in their own units -> the flow's context (log10 where marked, standardised)."""
        c = torch.where(self.log_mask, torch.log10(params.clamp(min=1e-12)), params)
        return (c - self.c_mean) / self.c_std

    def fit_scaling(self, latents: torch.Tensor, params: torch.Tensor) -> None:
        """Set the standardisation from training latents (N, D) and parameters (N, P)."""
        c = torch.where(self.log_mask, torch.log10(params.clamp(min=1e-12)), params)
        self.z_mean.copy_(latents.mean(0))
        self.z_std.copy_(latents.std(0).clamp(min=1e-6))
        self.c_mean.copy_(c.mean(0))
        self.c_std.copy_(c.std(0).clamp(min=1e-6))

    def log_prob(self, latents: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(standardised latents | parameters) per galaxy, nats."""
        z = (latents - self.z_mean) / self.z_std
        return self.flow.log_prob(z, context=self.context_scale(params))

    def sample(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Latents (N, D) for parameters (N, P) from base noise (N, D) (zeros: the central latent)."""
        z, _ = self.flow._transform.inverse(noise, context=self.context_scale(params))
        return z * self.z_std + self.z_mean


def _batches(z: torch.Tensor, c: torch.Tensor, batch_size: int, seed: int, epoch: int | None):
    order = (
        torch.arange(len(z))
        if epoch is None
        else torch.from_numpy(np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(z)))
    )
    for start in range(0, len(z), batch_size):
        sel = order[start : start + batch_size]
        yield z[sel], c[sel]


def _step(model: ConditionalFlow, batch, epoch: int, gen: torch.Generator, training: bool) -> dict[str, torch.Tensor]:
    z, c = batch
    device = next(model.parameters()).device
    lp = model.log_prob(z.to(device), c.to(device))
    loss = -lp.mean() / model.features
    return {"loss": loss, "log_prob_per_dim": -loss.detach()}


def train_flow(
    latents: np.ndarray,
    params: np.ndarray,
    split: np.ndarray,
    names: Sequence[str],
    settings_cfg: Mapping[str, Any],
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[ConditionalFlow, pd.DataFrame]:
    """Fit a :class:`ConditionalFlow` to the ``train`` rows; early-stop on the ``val`` rows.

    ``latents`` (N, D), ``params`` (N, P) in the parameters' own units, ``split``
    (N,) of ``train``/``val``/``test``; ``settings_cfg`` is the config's ``flow`` section.
    Returns the model with its best weights and the history (``train_log_prob_per_dim``,
    ``val_log_prob_per_dim`` per epoch).
    """
    device = pick_device(settings_cfg.get("device", "auto"))
    z = torch.as_tensor(latents, dtype=torch.float32)
    c = torch.as_tensor(params, dtype=torch.float32)
    tr, va = np.asarray(split == "train"), np.asarray(split == "val")
    if tr.sum() < 2:
        raise ValueError(f"the flow needs at least two training galaxies with usable parameters, got {int(tr.sum())}")
    torch.manual_seed(derived_seed(seed, 0xF10))
    model = ConditionalFlow(
        z.shape[1],
        names,
        int(settings_cfg["hidden_features"]),
        int(settings_cfg["num_layers"]),
        int(settings_cfg["num_blocks"]),
    )
    model.fit_scaling(z[tr], c[tr])
    model = model.to(device)
    bs = int(settings_cfg["batch_size"])
    ztr, ctr = z[tr], c[tr]
    zva, cva = (z[va], c[va]) if va.any() else (ztr, ctr)
    batch_seed = derived_seed(seed, 0xF10, 1)
    settings = TrainSettings(
        max_epochs=int(settings_cfg["max_epochs"]),
        patience=int(settings_cfg["patience"]),
        learning_rate=float(settings_cfg["learning_rate"]),
        seed=batch_seed,
        weight_decay=float(settings_cfg["weight_decay"]),
    )
    fingerprint = repr((sorted(settings_cfg.items()), list(names), z.shape, float(z.sum()), float(c.sum())))
    best, history = train(
        model,
        _step,
        lambda epoch: _batches(ztr, ctr, bs, batch_seed, epoch),
        lambda: _batches(zva, cva, 4 * bs, batch_seed, None),
        settings,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        desc="flow",
        progress=progress,
    )
    model.load_state_dict(best)
    return model.eval(), history


@torch.no_grad()
def mean_log_prob(model: ConditionalFlow, latents: np.ndarray, params: np.ndarray) -> float:
    """Mean log-probability per latent dimension (nats) of ``latents`` given ``params``."""
    device = next(model.parameters()).device
    z = torch.as_tensor(latents, dtype=torch.float32, device=device)
    c = torch.as_tensor(params, dtype=torch.float32, device=device)
    return float(model.log_prob(z, c).mean()) / model.features


@torch.no_grad()
def sample_latents(
    model: ConditionalFlow, params: np.ndarray, seed: int | None, temperature: float = 1.0
) -> np.ndarray:
    """One latent vector per row of ``params`` (N, P); base noise from ``seed`` (None: the central latent)."""
    device = next(model.parameters()).device
    c = torch.as_tensor(params, dtype=torch.float32, device=device)
    if seed is None:
        noise = torch.zeros(len(c), model.features, device=device)
    else:
        gen = seeded_generator(seed, 0xF10, device="cpu")
        noise = (temperature * torch.randn(len(c), model.features, generator=gen)).to(device)
    return model.sample(c, noise).cpu().numpy()


def save_flow(path: str | Path, model: ConditionalFlow, meta: Mapping[str, Any]) -> None:
    """Write the flow's weights and metadata (:func:`galmap.nn.training.save_model`)."""
    save_model(path, model, meta)


def load_flow(path: str | Path, device: torch.device | str = "cpu") -> tuple[ConditionalFlow, dict[str, Any]]:
    """Read a file written by :func:`save_flow` (``weights_only=True``)."""
    return load_model(path, ConditionalFlow, device)
