"""One training loop for the project's networks: seeded, early-stopped, scheduled, resumable.

:func:`train` runs epochs of a user-supplied ``step`` over training batches,
evaluates the validation batches after each epoch, keeps the best weights by
validation loss, stops after ``patience`` epochs without improvement, anneals
the learning rate with a cosine schedule, shows a progress bar with the losses,
and writes a checkpoint after every epoch. A killed job that is rerun with the
same settings (the ``fingerprint``) resumes from its last checkpoint and ends
with the same weights as an uninterrupted run: every random draw of epoch ``e``
comes from a generator seeded with ``(seed, e)``.

The losses stay on the device: each batch's metrics are added, weighted by the
batch size, to float64 sums on the device, and the sums are read once per epoch
(one host-device synchronisation per epoch instead of one per batch, which would
idle a GPU between steps). ``TrainSettings.sync_every_batch`` reads every batch's
metrics instead (the old behaviour, kept for ``benchmarks/training.py``); the per-epoch
numbers are the same either way (the same float64 operations in the same order).
``TrainSettings.bf16`` runs the steps under bfloat16 autocast on CUDA (ignored on the CPU).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from galmap.core.io import atomic_path

log = logging.getLogger("galmap")

#: ``step(model, batch, epoch, generator, training) -> {"loss": tensor, other metrics...}``
Step = Callable[[torch.nn.Module, Any, int, torch.Generator, bool], Mapping[str, torch.Tensor]]


def derived_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed derived from ``(seed, *stream)`` (independent streams of one master seed)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def seeded_generator(seed: int, *stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded from ``(seed, *stream)``."""
    value = int(np.random.SeedSequence([seed, *stream]).generate_state(1, np.uint64)[0]) & (2**63 - 1)
    return torch.Generator(device=device).manual_seed(value)


def split_batches(split: np.ndarray, name: str, batch_size: int, seed: int, shuffle: bool, *tensors: torch.Tensor):
    """Mini-batches of in-memory tensors for :func:`train`: a function of the epoch ``e``.

    Yields, per batch, the rows of every tensor (same order) for the items whose
    ``split`` equals ``name``, in a permutation drawn from ``[seed, e]`` when ``shuffle``.
    """
    idx = np.flatnonzero(np.asarray(split) == name)

    def epoch(e: int):
        order = np.random.default_rng([seed, e]).permutation(idx) if shuffle else idx
        for start in range(0, len(order), batch_size):
            sel = torch.as_tensor(order[start : start + batch_size])
            yield tuple(t[sel] for t in tensors)

    return epoch


def data_digest(*items: Any) -> str:
    """A short content hash of a training run's inputs, for checkpoint fingerprints.

    ``items`` are file paths (hashed by their bytes, read in 1 MiB chunks), numpy
    arrays or torch tensors (hashed by dtype, shape and values), or sequences of
    these. A checkpoint written for other inputs then no longer matches: a job whose
    inputs were rewritten since it was killed (a changed upstream parameter) starts
    over instead of resuming weights trained on the old data.
    """
    h = hashlib.blake2b(digest_size=16)

    def feed(item: Any) -> None:
        if isinstance(item, (str, Path)):
            with open(item, "rb") as fh:
                for chunk in iter(lambda: fh.read(2**20), b""):
                    h.update(chunk)
        elif isinstance(item, torch.Tensor):
            feed(item.detach().cpu().numpy())
        elif isinstance(item, np.ndarray):
            arr = np.ascontiguousarray(item)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
        elif isinstance(item, (list, tuple)):
            for sub in item:
                feed(sub)
        else:
            h.update(repr(item).encode())

    for item in items:
        feed(item)
    return h.hexdigest()


def save_weights(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a dict of tensors and plain values atomically (``torch.save``)."""
    with atomic_path(path, ".pt") as tmp:
        torch.save(dict(state), tmp)


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a file written by :func:`save_weights` (``weights_only=True``: tensors and plain values only)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise OSError(f"cannot read model file {path}: {exc}") from exc


def save_model(path: str | Path, model: torch.nn.Module, meta: Mapping[str, Any]) -> None:
    """Write a network's weights and metadata; ``meta["model"]`` must hold its constructor arguments."""
    save_weights(path, {"state_dict": model.state_dict(), "meta": dict(meta)})


def load_model(
    path: str | Path, cls: Callable[..., torch.nn.Module], device: torch.device | str = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """Rebuild ``cls(**meta["model"])`` from a file of :func:`save_model`, in eval mode on ``device``."""
    state = load_weights(path, device)
    meta = state["meta"]
    model = cls(**meta["model"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), meta


@dataclass
class TrainSettings:
    """Optimisation settings of one training run."""

    max_epochs: int
    patience: int
    learning_rate: float
    seed: int
    weight_decay: float = 0.0
    min_lr_fraction: float = 0.05
    #: ``"best"``: the weights of the epoch with the lowest validation loss; ``"last"``: those of
    #: the last epoch (a fixed schedule, when the validation loss cannot choose, as in domain adaptation)
    keep: str = "best"
    #: run the steps under bfloat16 autocast when the model is on CUDA (on the CPU it stays off: CPU
    #: autocast is slower than float32 for these networks and changes the numbers)
    bf16: bool = False
    #: read every batch's metrics on the host as it ends (one synchronisation per batch: the old loop,
    #: for benchmarks); the default reads the sums once per epoch. The per-epoch numbers are the same
    sync_every_batch: bool = False
    #: > 0: keep an exponential moving average of the weights (decay per optimiser step, warmed up as
    #: ``min(decay, (1 + step) / (10 + step))``) and return it instead of the raw weights (diffusion models
    #: sample from it); the validation loss is still that of the raw weights
    ema_decay: float = 0.0


def _ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """``ema = decay ema + (1 - decay) weights`` for floating-point entries of the state dict; others copied."""
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                ema[k].copy_(v)


class _EpochMeans:
    """Batch-size-weighted means of a step's metrics over an epoch.

    Each metric is added as ``float64(value) * batch_size`` to a running sum, in batch
    order: on the device (read once, in :meth:`means`), or, with ``sync``, read on the
    host after every batch (Python floats). Both do the same IEEE float64 operations in
    the same order, so they give the same numbers bit for bit.
    """

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.sums: dict[str, Any] = {}
        self.count = 0

    def add(self, out: Mapping[str, torch.Tensor], size: int) -> None:
        for key, value in out.items():
            term = value.detach().to(torch.float64) * size
            if self.sync:
                term = term.item()
            self.sums[key] = self.sums[key] + term if key in self.sums else term
        self.count += size

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = [self.sums[k] for k in keys] if self.sync else torch.stack([self.sums[k] for k in keys]).tolist()
        wsum = max(self.count, 1)
        return {k: float(v / wsum) for k, v in zip(keys, values, strict=True)}


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0])


def train(
    model: torch.nn.Module,
    step: Step,
    train_batches: Callable[[int], Iterable[Any]],
    val_batches: Callable[[], Iterable[Any]],
    settings: TrainSettings,
    checkpoint: str | Path | None = None,
    fingerprint: str = "",
    desc: str = "training",
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Train ``model``; return its best state dict (by validation loss, or the last) and the history.

    ``train_batches(epoch)`` yields the batches of one epoch; ``val_batches()`` the
    validation batches. ``step`` returns a dict of scalar tensors with at least
    ``"loss"`` (back-propagated in training, the selection criterion in validation).
    The history has one row per epoch: ``epoch, lr, seconds, images_per_s,
    train_<metric>..., val_<metric>...``.
    """
    if settings.keep not in ("best", "last"):
        raise ValueError(f"{desc}: keep must be 'best' or 'last', not {settings.keep!r}")
    device = next(model.parameters()).device
    bf16 = settings.bf16 and device.type == "cuda"
    if settings.bf16 and not bf16:
        log.info("%s: bf16 autocast is for CUDA; on %s the networks train in float32", desc, device.type)
    if bf16:
        fingerprint += ":bf16"  # a float32 checkpoint is not resumed in bf16, nor the other way round
    opt = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=settings.max_epochs, eta_min=settings.learning_rate * settings.min_lr_fraction
    )
    start, best_val, best_epoch, bad = 0, math.inf, -1, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if settings.ema_decay > 0 else None
    n_steps = 0
    if ema is not None:
        fingerprint += f":ema{settings.ema_decay}"
    history: list[dict[str, float]] = []
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = load_weights(ckpt, device)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            best_state = state["best"]
            start, best_val, best_epoch, bad = (
                int(state["epoch"]) + 1,
                float(state["best_val"]),
                int(state["best_epoch"]),
                int(state["bad_epochs"]),
            )
            history = [dict(r) for r in state["history"]]
            if ema is not None:
                ema, n_steps = state["ema"], int(state["ema_steps"])
            log.info("%s: resuming from the checkpoint after epoch %d (%s)", desc, start - 1, ckpt)
        else:
            log.info("%s: checkpoint %s is from other settings; starting over", desc, ckpt)

    bar = tqdm(
        range(start, settings.max_epochs),
        desc=desc,
        unit="epoch",
        disable=not progress,
        initial=start,
        total=settings.max_epochs,
    )
    for epoch in bar:
        if bad >= settings.patience:
            break
        t0 = time.perf_counter()
        gen = seeded_generator(settings.seed, epoch, device=device)
        model.train()
        sums = _EpochMeans(settings.sync_every_batch)
        for batch in train_batches(epoch):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                out = step(model, batch, epoch, gen, True)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            if ema is not None:
                _ema_update(ema, model, min(settings.ema_decay, (1 + n_steps) / (10 + n_steps)))
                n_steps += 1
            sums.add(out, _batch_size(batch))
        train_m = sums.means()  # the epoch's one synchronisation (the device has finished its steps)
        n_train = sums.count
        seconds = time.perf_counter() - t0
        model.eval()
        vsums = _EpochMeans(settings.sync_every_batch)
        vgen = seeded_generator(settings.seed, epoch, 1, device=device)
        with torch.no_grad():
            for batch in val_batches():
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    out = step(model, batch, epoch, vgen, False)
                vsums.add(out, _batch_size(batch))
        val_m = vsums.means()
        if not math.isfinite(train_m.get("loss", math.nan)):
            raise FloatingPointError(f"{desc}: the training loss is not finite at epoch {epoch} ({train_m})")
        row = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "seconds": seconds,
            "images_per_s": n_train / max(seconds, 1e-9),
        }
        row |= {f"train_{k}": v for k, v in train_m.items()} | {f"val_{k}": v for k, v in val_m.items()}
        history.append(row)
        sched.step()
        val_loss = val_m.get("loss", train_m["loss"])
        if settings.keep == "last" or val_loss < best_val:
            best_val, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in (ema or model.state_dict()).items()}
        else:
            bad += 1
        bar.set_postfix(train=f"{train_m['loss']:.4g}", val=f"{val_loss:.4g}", best=best_epoch)
        log.info(
            "%s epoch %d: %s",
            desc,
            epoch,
            ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"),
        )
        if ckpt is not None:
            save_weights(
                ckpt,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "best": best_state,
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad,
                    "history": history,
                }
                | ({"ema": ema, "ema_steps": n_steps} if ema is not None else {}),
            )
    bar.close()
    frame = pd.DataFrame(history)
    if len(frame):
        frame["best"] = frame["epoch"] == best_epoch
    if settings.keep == "last":
        log.info("%s: kept the last epoch, %d (validation loss %.5g)", desc, best_epoch, best_val)
    else:
        log.info("%s: best validation loss %.5g at epoch %d", desc, best_val, best_epoch)
    return best_state, frame
