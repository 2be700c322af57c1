"""One trainer, predictor and examples writer for the image-to-image U-Nets (super-resolution and Hα).

A model maps a condition ``x`` (N, C, H, W: the input survey's bands, network scale) to
a target ``y`` (N, 1, H, W) with per-pixel loss weights ``w``. Two kinds:

* ``"regression"``: the U-Net predicts the target; loss :func:`galmap.nn.losses.weighted_mse`;
* ``"diffusion"``: a time-conditioned U-Net denoises the target given the condition; loss
  :func:`galmap.nn.diffusion.diffusion_loss`.

:func:`seeded_unet` builds a U-Net whose initial weights come from a seed;
:func:`pixel_step` is the training step of either kind; :func:`fit_unet` trains on a
split (train, validated on val) with the shared loop of :mod:`galmap.nn.training`;
:func:`predict_unet` runs a regression U-Net in batches; :func:`write_examples` writes the
evaluation's example images to HDF5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from galmap.core.io import atomic_path
from galmap.nn.augment import random_dihedral
from galmap.nn.diffusion import diffusion_loss
from galmap.nn.losses import weighted_mse
from galmap.nn.training import TrainSettings, split_batches, train
from galmap.nn.unet import UNet

KINDS = ("regression", "diffusion")


def seeded_unet(
    seed: int, device: torch.device, in_channels: int, channels: Sequence[int], kind: str = "regression"
) -> UNet:
    """A U-Net of ``kind`` with ``in_channels`` condition channels and one output, initial weights from ``seed``.

    A diffusion U-Net also sees the noisy target (one more input channel) and the noise level (time embedding).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown image-to-image model {kind!r} ({', '.join(KINDS)})")
    diffusion = kind == "diffusion"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initial weights come from the seed too
        return UNet(in_channels + int(diffusion), 1, channels, time_embedding=diffusion).to(device)


def augment_pairs(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The conditions ``x``, targets ``y`` and weights ``w`` of each galaxy under one random rotation/flip."""
    nx, ny = x.shape[1], y.shape[1]
    both = random_dihedral(torch.cat([x, y, w], 1), generator)
    return both[:, :nx], both[:, nx : nx + ny], both[:, nx + ny :]


def pixel_step(kind: str, device: torch.device, target_scale: float | None = None, augment: bool = False) -> Callable:
    """The training step of a ``kind`` model on batches of ``(x, y, w)``.

    ``target_scale``: a diffusion model works on ``y / target_scale``; ``augment``: a
    regression model sees each training galaxy under a random rotation/flip (:func:`augment_pairs`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown image-to-image model {kind!r} ({', '.join(KINDS)})")

    def step(m, batch, epoch, gen, training):
        x, y, w = (b.to(device) for b in batch)
        if kind == "diffusion":
            return {"loss": diffusion_loss(m, y if target_scale is None else y / target_scale, x, w, gen)}
        if training and augment:
            x, y, w = augment_pairs(x, y, w, gen)
        return {"loss": weighted_mse(m(x), y, w)}

    return step


def fit_unet(
    model: UNet,
    step: Callable,
    split: np.ndarray,
    tensors: Sequence[torch.Tensor],
    batch_size: int,
    settings: TrainSettings,
    checkpoint,
    fingerprint: str,
    desc: str,
) -> tuple[UNet, pd.DataFrame, dict[str, Any]]:
    """Train ``model`` with ``step`` on the ``"train"`` galaxies of ``split`` (validated on ``"val"``).

    ``tensors`` are the per-galaxy batch members (``x, y, w``). Returns the model (the
    epoch ``settings.keep`` chooses, in eval mode), its history and its metadata
    (``model``, ``seed``, ``n_train``, ``train_images_per_s``).
    """
    state, history = train(
        model,
        step,
        split_batches(split, "train", batch_size, settings.seed, True, *tensors),
        lambda: split_batches(split, "val", batch_size, settings.seed, False, *tensors)(0),
        settings,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        desc=desc,
    )
    model.load_state_dict(state)
    model.eval()
    meta = {
        "model": model.config,
        "seed": settings.seed,
        "n_train": int((split == "train").sum()),
        "train_images_per_s": float(history["images_per_s"].median()) if len(history) else float("nan"),
    }
    return model, history, meta


def predict_unet(model: UNet, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """A regression U-Net's output for conditions ``x`` (N, 1, H, W), on the network scale."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]).numpy()


def write_examples(path: str, examples: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """Example images and their ids as HDF5 datasets (strings as UTF-8), with file attributes ``attrs``."""
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as fh:
        for name, value in examples.items():
            arr = np.asarray(value)
            fh.create_dataset(name, data=arr.astype(h5py.string_dtype()) if arr.dtype.kind in "OU" else arr)
        for key, value in attrs.items():
            fh.attrs[key] = value
