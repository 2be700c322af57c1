"""Feeding image shards to neural networks: normalised inputs, noise weights, splits, batches.

The networks see each band on the asinh scale of the preprocessing,
``x = asinh(image / softening)`` (``softening`` per band, stored in the shard's
``norm_softening`` attribute, in image units), and weigh each pixel by its
inverse variance **on that scale**: with ``sigma`` the pixel noise (from ``ivar``)
and a fractional systematic error ``sys_error`` added in quadrature,
``w = (softening^2 + image^2) / (sigma^2 + (sys_error * image)^2)``
(the derivative of asinh carries the noise to the new scale). Pixels without
data (``ivar <= 0``: masked neighbours, bad pixels) and non-finite pixels get
``x = 0`` and ``w = 0``: they are invisible to the encoder and to the loss.

Galaxies are split into train / val / test by a hash of (seed, id), so a galaxy's
split does not depend on the shard it sits in or on the other galaxies.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from galmap.io import Shard
from galmap.preprocess import normalise


def assign_split(ids: Sequence[str], seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """``"train"``, ``"val"`` or ``"test"`` for each id, from a hash of (seed, id)."""
    out = np.empty(len(ids), dtype=object)
    for i, gid in enumerate(ids):
        h = hashlib.blake2b(f"{seed}:{gid}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "little") / 2.0**64
        out[i] = "test" if u < test_fraction else ("val" if u < test_fraction + val_fraction else "train")
    return out


def network_inputs(
    images: np.ndarray, ivar: np.ndarray, softening: Sequence[float], sys_error: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images ``x`` and their weights ``w`` (see the module docstring); float32 (N, B, H, W)."""
    s = np.asarray(softening, dtype=np.float32)[None, :, None, None]
    good = np.isfinite(images) & np.isfinite(ivar) & (ivar > 0)
    img = np.where(good, images, np.float32(0)).astype(np.float32)
    # variance in image units (inf where there is no data), plus the systematic term
    var = np.divide(1.0, ivar, out=np.full(img.shape, np.inf, np.float32), where=good)
    var += np.float32(sys_error) ** 2 * img**2
    w = np.where(good, (s**2 + img**2) / var, np.float32(0))
    return normalise(img, softening), w.astype(np.float32)  # img is 0 where there is no data: x = 0


def denormalise(x: torch.Tensor, softening: Sequence[float]) -> torch.Tensor:
    """Inverse of the asinh scale: image units per pixel."""
    s = torch.as_tensor(np.asarray(softening, dtype=np.float32), device=x.device)[None, :, None, None]
    return s * torch.sinh(x)


@dataclass
class ShardInputs:
    """One shard ready for a network: ``x``, ``w`` tensors (N, B, H, W), ids, splits, the shard's attributes.

    ``y`` holds optional per-galaxy targets (N, ...) that travel with the images
    (e.g. class codes of several questions, -1 where unused).
    """

    x: torch.Tensor
    w: torch.Tensor
    ids: np.ndarray
    split: np.ndarray
    attrs: dict
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Memory held by ``x``, ``w`` and ``y`` (bytes)."""
        extra = 0 if self.y is None else self.y.element_size() * self.y.nelement()
        return self.x.element_size() * self.x.nelement() * 2 + extra

    def select(self, keep: np.ndarray) -> ShardInputs:
        """The galaxies where the boolean ``keep`` is true."""
        idx = torch.as_tensor(np.flatnonzero(keep))
        y = None if self.y is None else self.y[idx]
        return ShardInputs(self.x[idx], self.w[idx], self.ids[keep], self.split[keep], self.attrs, y)


def shard_inputs(shard: Shard, seed: int, val_fraction: float, test_fraction: float, sys_error: float) -> ShardInputs:
    """Network inputs of a preprocessed shard (which must carry ``norm_softening``)."""
    if "norm_softening" not in shard.attrs:
        raise ValueError(
            f"shard of survey {shard.attrs.get('survey')!r} has no 'norm_softening' attribute: "
            "the networks read preprocessed shards (results/images/...), not raw ones"
        )
    x, w = network_inputs(shard.images, shard.ivar, shard.attrs["norm_softening"], sys_error)
    split = assign_split([str(i) for i in shard.ids], seed, val_fraction, test_fraction)
    ids = np.asarray(shard.ids, dtype=object)
    return ShardInputs(torch.from_numpy(x), torch.from_numpy(w), ids, split, dict(shard.attrs))


class ShardStream:
    """Shuffled mini-batches ``(x, w)`` (or ``(x, w, y)`` with targets) of one split, read shard by shard.

    Shards are kept in memory up to ``cache_mb``; when all of them fit (the default
    config), they are read once and every epoch shuffles all galaxies together.
    Otherwise each epoch visits the shards in a random order, in blocks of as many
    shards as fit in half the cache, shuffling within a block, while a background
    thread reads the next block (so reading overlaps training).

    Parameters
    ----------
    paths : the shard files.
    load : reads one file into :class:`ShardInputs` (e.g. via :func:`shard_inputs`).
    split : the split to yield (``"train"``, ``"val"``, ``"test"``) or None for all.
    seed : seeds the per-epoch shuffles (the same seed gives the same batches).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        load: Callable[[Path], ShardInputs],
        split: str | None,
        batch_size: int,
        seed: int,
        cache_mb: float = 4000.0,
        shuffle: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.load = load
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.cache_bytes = cache_mb * 2**20
        self.shuffle = shuffle
        self._cache: OrderedDict[Path, ShardInputs] = OrderedDict()
        self._lock = threading.Lock()
        self._all: tuple[torch.Tensor, ...] | None = None

    def _get(self, path: Path) -> ShardInputs:
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        data = self.load(path)
        if self.split is not None:
            data = data.select(data.split == self.split)
        with self._lock:
            self._cache[path] = data
            while len(self._cache) > 1 and sum(d.nbytes for d in self._cache.values()) > self.cache_bytes:
                self._cache.popitem(last=False)
        return data

    def _blocks(self, order: list[Path]) -> list[list[Path]]:
        per_shard = max(self._get(order[0]).nbytes, 1)
        if per_shard * len(order) <= self.cache_bytes:
            return [list(self.paths)]  # canonical order: the same rows whatever the epoch
        size = max(1, int(0.5 * self.cache_bytes // per_shard))
        return [order[i : i + size] for i in range(0, len(order), size)]

    def first(self) -> ShardInputs:
        """The first shard's inputs (of this stream's split), read through the cache."""
        return self._get(self.paths[0])

    def _concat(self, parts: list[ShardInputs], whole: bool) -> tuple[torch.Tensor, ...]:
        """One block's tensors ``(x, w[, y])``; the whole data set's are concatenated once and kept."""
        if whole and self._all is not None:
            return self._all
        names = ("x", "w") if parts[0].y is None else ("x", "w", "y")
        out = tuple(
            torch.cat([getattr(p, n) for p in parts]) if len(parts) > 1 else getattr(parts[0], n) for n in names
        )
        if whole:
            self._all = out
        return out

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches ``(x, w[, y])`` of one epoch (a different shuffle for each epoch number)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
        order = [self.paths[i] for i in rng.permutation(len(self.paths))] if self.shuffle else list(self.paths)
        blocks = self._blocks(order)
        prefetched: dict[int, list[ShardInputs]] = {}

        def read(k: int) -> None:
            prefetched[k] = [self._get(p) for p in blocks[k]]

        thread = None
        for k in range(len(blocks)):
            if thread is not None:
                thread.join()
            else:
                read(k)
            if k + 1 < len(blocks):
                thread = threading.Thread(target=read, args=(k + 1,), daemon=True)
                thread.start()
            tensors = self._concat(prefetched.pop(k), whole=len(blocks) == 1)
            n = len(tensors[0])
            idx = torch.from_numpy(rng.permutation(n)) if self.shuffle else torch.arange(n)
            for start in range(0, len(idx), self.batch_size):
                sel = idx[start : start + self.batch_size]
                yield tuple(t[sel] for t in tensors)
