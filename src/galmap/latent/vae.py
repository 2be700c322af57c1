"""A convolutional variational autoencoder of galaxy images, trained with a noise-aware chi2.

The encoder is a stack of stride-2 4x4 convolutions (``channels`` per level, SiLU),
each followed by ``res_blocks`` residual blocks (two 3x3 convolutions and a skip),
then a linear layer to the mean and log-variance of a ``latent_dim``
Gaussian; the decoder mirrors it with transposed convolutions. Images whose side is
not a multiple of ``2**depth`` are zero-padded (with zero weight) and the output is
cropped back.

The loss per galaxy is the negative evidence lower bound with a Gaussian
likelihood whose variance is the pixel noise (:mod:`galmap.nn.inputs`):
``0.5 * chi2 + beta * KL``, with ``chi2 = sum(w (x - xhat)^2)`` on the asinh scale
and ``beta`` rising linearly from 0 to ``kl_weight`` over ``kl_warmup_epochs`` (the
KL warm-up); model selection always uses ``beta = kl_weight``. The loss is divided
by the number of pixels so that learning rates do not depend on the stamp size.
With ``free_bits`` > 0 the training loss counts each latent's batch-mean KL as at
least ``free_bits`` nats (Kingma et al. 2016), so that no latent is pushed to carry
nothing; with ``augment`` each training stamp (and its weights) is rotated by a random
multiple of 90 degrees and mirrored at random (:mod:`galmap.nn.augment`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galmap.core.device import pick_device
from galmap.core.io import read_shard
from galmap.nn.augment import random_dihedral
from galmap.nn.imagemetrics import masked_errors, ssim
from galmap.nn.inputs import ShardInputs, ShardStream, denormalise, shard_inputs
from galmap.nn.training import TrainSettings, data_digest, derived_seed, train

log = logging.getLogger("galmap")


class ResBlock(nn.Module):
    """``x + conv3x3(SiLU(conv3x3(x)))`` followed by SiLU (same channels and size)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.conv2(F.silu(self.conv1(x))))


class ConvVAE(nn.Module):
    """Convolutional VAE for (bands, size, size) images; see the module docstring."""

    def __init__(
        self, in_channels: int, image_size: int, latent_dim: int, channels: Sequence[int], res_blocks: int = 0
    ) -> None:
        super().__init__()
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        self.channels = [int(c) for c in channels]
        self.res_blocks = int(res_blocks)
        factor = 2 ** len(self.channels)
        self.padded = math.ceil(image_size / factor) * factor
        self.bottom = self.padded // factor
        enc: list[nn.Module] = []
        prev = in_channels
        for c in self.channels:
            enc += [nn.Conv2d(prev, c, 4, 2, 1), nn.SiLU()]
            enc += [ResBlock(c) for _ in range(self.res_blocks)]
            prev = c
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = self.channels[-1] * self.bottom**2
        self.to_latent = nn.Linear(flat, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), nn.SiLU())
        dec: list[nn.Module] = []
        rev = self.channels[::-1]
        for c_in, c_out in zip(rev[:-1], rev[1:], strict=True):
            dec += [ResBlock(c_in) for _ in range(self.res_blocks)]
            dec += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.SiLU()]
        dec += [ResBlock(rev[-1]) for _ in range(self.res_blocks)]
        dec.append(nn.ConvTranspose2d(rev[-1], in_channels, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (stored with the weights)."""
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "latent_dim": self.latent_dim,
            "channels": list(self.channels),
            "res_blocks": self.res_blocks,
        }

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (clamped to [-12, 8]) of the latent Gaussian of images ``x``."""
        pad = self.padded - self.image_size
        if pad:
            x = F.pad(x, (0, pad, 0, pad))
        mu, logvar = self.to_latent(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (asinh scale) of latent vectors ``z``."""
        h = self.from_latent(z).view(-1, self.channels[-1], self.bottom, self.bottom)
        return self.decoder(h)[..., : self.image_size, : self.image_size]

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction from a latent sample, and the latent mean and log-variance."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, 1)) per galaxy, in nats."""
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)


def kl_beta(epoch: int, kl_weight: float, warmup_epochs: int) -> float:
    """The KL weight at ``epoch`` (linear warm-up from 0 over ``warmup_epochs``)."""
    if warmup_epochs <= 0:
        return kl_weight
    return kl_weight * min(1.0, epoch / warmup_epochs)


def make_step(kl_weight: float, warmup_epochs: int, free_bits: float = 0.0, augment: bool = False):
    """The training/validation step of :func:`galmap.nn.training.train` for a :class:`ConvVAE`.

    ``free_bits`` (nats per latent) and ``augment`` act on training steps only; the
    validation loss is always the plain negative ELBO at ``beta = kl_weight``.
    """

    def step(model: ConvVAE, batch, epoch: int, gen: torch.Generator, training: bool) -> dict[str, torch.Tensor]:
        x, w = batch
        device = next(model.parameters()).device
        x, w = x.to(device, non_blocking=True), w.to(device, non_blocking=True)
        if training and augment:
            nb = x.shape[1]
            xw = random_dihedral(torch.cat([x, w], 1), gen)
            x, w = xw[:, :nb], xw[:, nb:]
        xhat, mu, logvar = model(x, gen)
        chi2 = (w * (xhat - x) ** 2).sum((1, 2, 3))
        kl_dims = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)
        kl = kl_dims.sum(1)
        beta = kl_beta(epoch, kl_weight, warmup_epochs) if training else kl_weight
        npix = x[0].numel()
        if training and free_bits > 0:
            kl_term = kl_dims.mean(0).clamp(min=free_bits).sum()
            loss = (0.5 * chi2.mean() + beta * kl_term) / npix
        else:
            loss = (0.5 * chi2 + beta * kl).mean() / npix
        nu = (w > 0).sum((1, 2, 3)).clamp(min=1)
        return {"loss": loss, "chi2_nu": (chi2 / nu).mean(), "kl": kl.mean()}

    return step


def _fingerprint(params: Mapping[str, Any], latent_dim: int, paths: Sequence[str | Path]) -> str:
    keys = (
        "channels",
        "batch_size",
        "max_epochs",
        "patience",
        "learning_rate",
        "kl_weight",
        "kl_warmup_epochs",
        "sys_error",
        "val_fraction",
        "test_fraction",
    )
    extra = [params.get(k, d) for k, d in (("res_blocks", 0), ("free_bits", 0.0), ("augment", False))]
    return repr(([params[k] for k in keys], extra, latent_dim, [str(p) for p in paths]))


def loader(params: Mapping[str, Any], seed: int):
    """A function reading a preprocessed shard file into network inputs with the VAE's settings."""

    def load(path: Path) -> ShardInputs:
        return shard_inputs(
            read_shard(path, datasets=()),
            seed,
            float(params["val_fraction"]),
            float(params["test_fraction"]),
            float(params["sys_error"]),
        )

    return load


def train_vae(
    paths: Sequence[str | Path],
    params: Mapping[str, Any],
    latent_dim: int,
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[ConvVAE, pd.DataFrame, dict[str, Any]]:
    """Train a :class:`ConvVAE` with ``latent_dim`` latents on the train split of the shards.

    ``params`` is the ``vae`` section of the config. Returns the model with its best
    weights, the training history and the metadata stored with the model.
    """
    device = pick_device(params.get("device", "auto"))
    load = loader(params, seed)
    bs = int(params["batch_size"])
    cache = float(params["cache_mb"])
    train_stream = ShardStream(paths, load, "train", bs, seed, cache)
    val_stream = ShardStream(paths, load, "val", 4 * bs, seed, cache, shuffle=False)
    first = train_stream.first()
    _, nb, h, w = first.x.shape
    if h != w:
        raise ValueError(f"the VAE needs square stamps; {paths[0]} has {h}x{w}")
    torch.manual_seed(derived_seed(seed, latent_dim, 0x7AE))
    model = ConvVAE(nb, h, latent_dim, params["channels"], int(params.get("res_blocks", 0))).to(device)
    settings = TrainSettings(
        max_epochs=int(params["max_epochs"]),
        patience=int(params["patience"]),
        learning_rate=float(params["learning_rate"]),
        seed=derived_seed(seed, latent_dim),
        bf16=bool(params.get("bf16", False)),
    )
    step = make_step(
        float(params["kl_weight"]),
        int(params["kl_warmup_epochs"]),
        float(params.get("free_bits", 0.0)),
        bool(params.get("augment", False)),
    )
    best, history = train(
        model,
        step,
        train_stream.epoch,
        lambda: val_stream.epoch(0),
        settings,
        checkpoint=checkpoint,
        fingerprint=_fingerprint(params, latent_dim, paths) + data_digest(list(paths)),
        desc=f"VAE z={latent_dim}",
        progress=progress,
    )
    model.load_state_dict(best)
    meta = {
        "model": model.config(),
        "bands": list(first.attrs["bands"]),
        "survey": str(first.attrs["survey"]),
        "sys_error": float(params["sys_error"]),
        "seed": seed,
    }
    return model, history, meta


@torch.no_grad()
def encode(model: ConvVAE, data: ShardInputs, batch_size: int = 256) -> pd.DataFrame:
    """Latents and reconstruction metrics of every galaxy of ``data``.

    Returns a table ``id, split, chi2_nu, chi2_nu_<band>..., mse, mae, ssim,
    ssim_<band>..., n_pix, mu_0..., logvar_0...`` (metrics of the reconstruction
    decoded from the latent mean; see :mod:`galmap.nn.imagemetrics`). ``chi2_nu_<band>``
    is the chi2 per unmasked pixel of one band alone (dimensionless, 1 = residuals
    at the noise level; NaN for a band without data): an artefact confined to one
    band (a satellite trail, a bad column) is not diluted by the other bands there.
    """
    device = next(model.parameters()).device
    softening = data.attrs["norm_softening"]
    bands = list(data.attrs["bands"])
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size].to(device)
        w = data.w[start : start + batch_size].to(device)
        mu, logvar = model.encode(x)
        xhat = model.decode(mu)
        err = masked_errors(x, xhat, w)
        recon, ref = denormalise(xhat, softening), denormalise(x, softening)
        s = ssim(ref, recon, w > 0)
        part = {k: v.cpu().numpy() for k, v in err.items()}
        valid = (w > 0).to(x.dtype)
        n_band = valid.sum((2, 3))
        chi2_band = (w * (x - xhat) ** 2 * valid).sum((2, 3)) / n_band.clamp(min=1)
        chi2_band = torch.where(n_band > 0, chi2_band, torch.full_like(chi2_band, float("nan"))).cpu().numpy()
        for j, band in enumerate(bands):
            part[f"chi2_nu_{band}"] = chi2_band[:, j]
        sv = s.cpu().numpy()
        ok = np.isfinite(sv)  # the mean over bands with data (NaN for an empty stamp, without a warning)
        part["ssim"] = np.where(ok.any(1), np.where(ok, sv, 0).sum(1) / np.maximum(ok.sum(1), 1), np.nan)
        for j, band in enumerate(bands):
            part[f"ssim_{band}"] = s[:, j].cpu().numpy()
        part["mu"] = mu.cpu().numpy()
        part["logvar"] = logvar.cpu().numpy()
        parts.append(part)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    k = model.latent_dim
    table = pd.DataFrame({"id": data.ids.astype(str), "split": data.split.astype(str)})
    keys = ("chi2_nu", *[f"chi2_nu_{b}" for b in bands], "mse", "mae", "ssim", *[f"ssim_{b}" for b in bands], "n_pix")
    for key in keys:
        table[key] = cat[key] if cat else np.array([], float)
    mu = cat["mu"] if cat else np.zeros((0, k))
    lv = cat["logvar"] if cat else np.zeros((0, k))
    lat = pd.DataFrame(
        np.hstack([mu, lv]).astype(np.float32),
        columns=[f"mu_{i}" for i in range(k)] + [f"logvar_{i}" for i in range(k)],
    )
    return pd.concat([table, lat], axis=1)


def scan_summary(tables: Mapping[int, pd.DataFrame], histories: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """``ssim_vs_latents.csv``: held-out (test split) SSIM, MSE, MAE, chi2/nu per latent size."""
    rows = []
    for k in sorted(tables):
        t = tables[k]
        test = t[t["split"] == "test"]
        h = histories.get(k)
        rows.append(
            {
                "latent_dim": k,
                "n_test": len(test),
                "ssim_mean": float(test["ssim"].mean()),
                "ssim_median": float(test["ssim"].median()),
                "ssim_std": float(test["ssim"].std()),
                "mse_mean": float(test["mse"].mean()),
                "mae_mean": float(test["mae"].mean()),
                "chi2_nu_median": float(test["chi2_nu"].median()),
                "epochs": int(len(h)) if h is not None else np.nan,
                "best_epoch": int(h.loc[h["best"], "epoch"].iloc[0]) if h is not None and len(h) else np.nan,
            }
        )
    return pd.DataFrame(rows)
