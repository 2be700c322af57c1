"""A multi-head convolutional classifier of galaxy images: one softmax per morphology question.

The network sees the images as the VAE does (:mod:`galmap.nn.inputs`: each band on
the asinh scale of the preprocessing, pixels without data set to 0). Its body is
a stride-2 3x3 convolution (the stem: half the resolution, a quarter of the cost)
then ``len(channels)`` levels of two 3x3 convolutions (batch norm, SiLU) and a 2x2
max-pool, then global average pooling and dropout; each question has its own
linear head. The loss is the sum over questions of the cross-entropy over the
galaxies where that question has a training label (class codes ``-1`` are
ignored), so one network learns every question from whatever labels exist.
Training images are randomly rotated by multiples of 90 degrees and flipped
(galaxy morphology does not depend on orientation) with the epoch's seeded
generator.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from galmap.classify.targets import PREDICTION_COLUMNS, decide, training_frequencies
from galmap.core.device import pick_device
from galmap.core.io import read_shard
from galmap.nn.augment import random_dihedral
from galmap.nn.inputs import ShardInputs, ShardStream, shard_inputs
from galmap.nn.training import TrainSettings, data_digest, derived_seed, train

log = logging.getLogger("galmap")

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


class MorphologyCNN(nn.Module):
    """Convolutional classifier with one head per question (see the module docstring)."""

    def __init__(
        self, in_channels: int, n_classes: Sequence[int], channels: Sequence[int], dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.n_classes = [int(k) for k in n_classes]
        self.channels = [int(c) for c in channels]
        self.dropout = float(dropout)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, self.channels[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(self.channels[0]),
            nn.SiLU(),
        ]
        prev = self.channels[0]
        for c in self.channels:
            layers += [
                nn.Conv2d(prev, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.SiLU(),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.SiLU(),
                nn.MaxPool2d(2),
            ]
            prev = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.dropout))
        self.heads = nn.ModuleList(nn.Linear(prev, k) for k in self.n_classes)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (stored with the weights)."""
        return {
            "in_channels": self.in_channels,
            "n_classes": list(self.n_classes),
            "channels": list(self.channels),
            "dropout": self.dropout,
        }

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits (N, n_classes[q]) of every question ``q``."""
        h = self.body(x)
        return [head(h) for head in self.heads]


def masked_cross_entropy(logits: Sequence[torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed per-question mean cross-entropy over labelled galaxies (``y >= 0``), and the accuracy."""
    loss = logits[0].new_zeros(())
    correct = total = 0
    for q, lg in enumerate(logits):
        t = y[:, q]
        use = t >= 0
        if use.any():
            loss = loss + F.cross_entropy(lg[use], t[use])
            correct += int((lg[use].argmax(1) == t[use]).sum())
            total += int(use.sum())
    return loss, torch.tensor(correct / max(total, 1))


def make_step(augment_images: bool):
    """The training/validation step of :func:`galmap.nn.training.train` for a :class:`MorphologyCNN`."""

    def step(model: MorphologyCNN, batch, epoch: int, gen: torch.Generator, training: bool) -> dict[str, torch.Tensor]:
        x, _w, y = batch
        device = next(model.parameters()).device
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if training and augment_images:
            x = random_dihedral(x, gen)
        loss, acc = masked_cross_entropy(model(x), y)
        return {"loss": loss, "accuracy": acc}

    return step


def target_lookup(targets: pd.DataFrame, questions: Sequence[str]) -> dict[str, np.ndarray]:
    """Per galaxy id: class codes (Q,) and split codes (Q,) (-1 where a question does not use it)."""
    out: dict[str, np.ndarray] = {}
    qi = {q: i for i, q in enumerate(questions)}
    for gid, q, c, s in zip(targets["id"], targets["question"], targets["class"], targets["split"], strict=True):
        if q not in qi:
            continue
        arr = out.get(gid)
        if arr is None:
            arr = out[gid] = np.full((2, len(questions)), -1, np.int64)
        arr[0, qi[q]] = int(c)
        arr[1, qi[q]] = SPLIT_CODE[s]
    return out


def loader(lookup: Mapping[str, np.ndarray], n_questions: int, role: str | None):
    """Read a preprocessed shard into network inputs with targets for ``role``.

    ``role`` ``"train"`` / ``"val"`` keeps, per question, only the labels of that
    split (others become -1) and drops galaxies left without any label; ``None``
    keeps every galaxy with all its labels (for predictions).
    """

    def load(path: Path) -> ShardInputs:
        data = shard_inputs(read_shard(path, datasets=()), 0, 0.0, 0.0, 0.0)  # splits come from the targets
        y = np.full((len(data), n_questions), -1, np.int64)
        split = np.full((len(data), n_questions), -1, np.int64)
        for i, gid in enumerate(data.ids):
            t = lookup.get(str(gid))
            if t is not None:
                y[i], split[i] = t
        if role is not None:
            y = np.where(split == SPLIT_CODE[role], y, -1)
        keep = (y >= 0).any(axis=1) if role is not None else np.ones(len(data), bool)
        kept = data.select(keep)
        role_split = np.full(len(kept), role or "all", dtype=object)
        return dataclasses.replace(kept, ids=kept.ids.astype(str), split=role_split, y=torch.from_numpy(y[keep]))

    return load


def train_cnn(
    paths: Sequence[str | Path],
    targets: pd.DataFrame,
    questions: Sequence[str],
    n_classes: Sequence[int],
    params: Mapping[str, Any],
    seed: int,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[MorphologyCNN, pd.DataFrame, dict[str, Any]]:
    """Train a :class:`MorphologyCNN` on the training labels of ``targets``; early-stop on the val labels.

    ``params`` is the config's ``classify.cnn`` section. Returns the model with its
    best weights, the history and the metadata stored with it.
    """
    device = pick_device(params.get("device", "auto"))
    lookup = target_lookup(targets, questions)
    bs = int(params["batch_size"])
    cache = float(params["cache_mb"])
    train_stream = ShardStream(paths, loader(lookup, len(questions), "train"), None, bs, seed, cache)
    val_stream = ShardStream(paths, loader(lookup, len(questions), "val"), None, 4 * bs, seed, cache, shuffle=False)
    first = train_stream.first()
    nb = first.x.shape[1]
    torch.manual_seed(derived_seed(seed, 0xC22))
    model = MorphologyCNN(nb, n_classes, params["channels"], float(params["dropout"])).to(device)
    settings = TrainSettings(
        max_epochs=int(params["max_epochs"]),
        patience=int(params["patience"]),
        learning_rate=float(params["learning_rate"]),
        seed=derived_seed(seed, 0xC22, 1),
        weight_decay=float(params["weight_decay"]),
        bf16=bool(params.get("bf16", False)),
    )
    fingerprint = repr((sorted(params.items()), list(questions), list(n_classes), [str(p) for p in paths]))
    fingerprint += data_digest(list(paths))
    best, history = train(
        model,
        make_step(bool(params["augment"])),
        train_stream.epoch,
        lambda: val_stream.epoch(0),
        settings,
        checkpoint=checkpoint,
        fingerprint=fingerprint + repr(pd.util.hash_pandas_object(targets, index=False).sum()),
        desc="CNN",
        progress=progress,
    )
    model.load_state_dict(best)
    meta = {
        "model": model.config(),
        "questions": list(questions),
        "bands": list(first.attrs["bands"]),
        "survey": str(first.attrs["survey"]),
        "seed": seed,
    }
    return model, history, meta


def prediction_inputs(path: str | Path, targets: pd.DataFrame, questions: Sequence[str]) -> ShardInputs:
    """One shard's network inputs as :func:`predict` reads them (every galaxy, its labels in ``y``).

    Read once and passed to :func:`predict` in place of the path, one shard serves several models.
    """
    return loader(target_lookup(targets, questions), len(questions), None)(Path(path))


@torch.no_grad()
def predict(
    model: MorphologyCNN,
    paths: Sequence[str | Path | ShardInputs],
    targets: pd.DataFrame,
    questions: Sequence[str],
    batch_size: int = 256,
    decision: str = "most_probable",
) -> pd.DataFrame:
    """Class predictions of every galaxy of ``targets`` (:data:`PREDICTION_COLUMNS`), shard by shard.

    ``paths``: the preprocessed shards, each a path or its inputs already read
    (:func:`prediction_inputs` with the same ``targets`` and ``questions``).
    ``decision`` turns the softmax probabilities into the answer
    (:func:`galmap.classify.targets.decide`, with the training galaxies' class frequencies);
    ``confidence`` is the probability of the answer.
    """

    device = next(model.parameters()).device
    lookup = target_lookup(targets, questions)
    load = loader(lookup, len(questions), None)
    split_name = {v: k for k, v in SPLIT_CODE.items()}
    parts = []
    for path in paths:
        data = path if isinstance(path, ShardInputs) else load(Path(path))
        probs = [[] for _ in questions]
        for start in range(0, len(data), batch_size):
            logits = model(data.x[start : start + batch_size].to(device))
            for q, lg in enumerate(logits):
                probs[q].append(torch.softmax(lg, 1).cpu().numpy())
        if not len(data):
            continue
        have = data.ids.astype(str)
        t = np.stack([lookup.get(g, np.full((2, len(questions)), -1)) for g in have])  # (N, class/split, Q)
        for q, name in enumerate(questions):
            p = np.concatenate(probs[q])
            answer = decide(p, training_frequencies(targets, name, p.shape[1]), decision)
            use = t[:, 0, q] >= 0
            parts.append(
                pd.DataFrame(
                    {
                        "id": have[use],
                        "question": name,
                        "split": [split_name[int(s)] for s in t[use, 1, q]],
                        "true_class": t[use, 0, q],
                        "pred_class": answer[use].astype(np.int64),
                        "confidence": p[use, answer[use]],
                    }
                )
            )
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return table[PREDICTION_COLUMNS]
