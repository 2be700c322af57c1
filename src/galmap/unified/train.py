"""Training the unified model with the project's trainer (:func:`galmap.nn.training.train`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from galmap.core.device import pick_device
from galmap.nn.training import TrainSettings, data_digest, derived_seed, split_batches, train
from galmap.unified.data import SurveyStack
from galmap.unified.model import Alignment, UnifiedVAE, make_step

log = logging.getLogger("galmap")

#: the settings a trained model depends on (the checkpoint's fingerprint)
TRAIN_KEYS = (
    "surveys", "decode_only", "latent_dim", "channels", "batch_size", "max_epochs", "patience", "learning_rate",
    "kl_weight", "kl_warmup_epochs", "sys_error", "cross", "align_weight", "contrastive_weight", "temperature",
    "contrastive_metric", "adversary_weight", "adversary_hidden", "mean_align_weight",
    "val_fraction", "test_fraction",
)  # fmt: skip


def train_unified(
    stack: SurveyStack,
    params: Mapping[str, Any],
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[UnifiedVAE, pd.DataFrame, dict[str, Any]]:
    """Train a :class:`UnifiedVAE` on the train split of ``stack`` (early stopping on its val split).

    ``params`` is the ``unified`` section of the config. Returns the model with its best
    weights, the history and the metadata stored with the model.
    """
    device = pick_device(params.get("device", "auto"))
    latent_dim = int(params["latent_dim"])
    torch.manual_seed(derived_seed(seed, latent_dim, 0x0E1F))
    align = Alignment.from_params(params)
    model = UnifiedVAE(
        stack.shapes(),
        latent_dim,
        params["channels"],
        params.get("decode_only", []),
        adversary_hidden=int(params.get("adversary_hidden", 64)) if align.adversary_weight > 0 else 0,
    ).to(device)
    settings = TrainSettings(
        max_epochs=int(params["max_epochs"]),
        patience=int(params["patience"]),
        learning_rate=float(params["learning_rate"]),
        seed=derived_seed(seed, latent_dim, 0x0E1F, 1),
        bf16=bool(params.get("bf16", False)),
    )
    bs = int(params["batch_size"])
    tensors = stack.tensors()
    train_batches = split_batches(stack.split, "train", bs, settings.seed, True, *tensors)
    val_batches = split_batches(stack.split, "val", 4 * bs, settings.seed, False, *tensors)
    if not (stack.split == "train").any():
        raise ValueError("unified: no galaxy in the train split")
    step = make_step(
        stack.surveys,
        float(params["kl_weight"]),
        int(params["kl_warmup_epochs"]),
        bool(params["cross"]),
        align,
        int(params["max_epochs"]),
    )
    fingerprint = repr([params.get(k) for k in TRAIN_KEYS]) + data_digest(stack.ids, *tensors)
    best, history = train(
        model,
        step,
        train_batches,
        lambda: val_batches(0),
        settings,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
        desc=f"unified z={latent_dim}",
        progress=progress,
    )
    model.load_state_dict(best)
    meta = {
        "model": model.config(),
        "bands": {s: list(stack.attrs[s]["bands"]) for s in stack.surveys},
        "norm_softening": {s: [float(v) for v in stack.attrs[s]["norm_softening"]] for s in stack.surveys},
        "pixscale_arcsec": {s: float(stack.attrs[s]["pixscale_arcsec"]) for s in stack.surveys},
        "sys_error": float(params["sys_error"]),
        "seed": seed,
    }
    return model.eval(), history, meta
