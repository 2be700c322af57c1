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

from galmap.core.failures import FailureLog
from galmap.core.io import Shard, read_shard
from galmap.preprocess.stamps import FLAGS as PRE_FLAGS
from galmap.preprocess.stamps import normalise


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


class ShardCache:
    """Loaded shards by path, up to ``cache_mb`` of :attr:`ShardInputs.nbytes` (at least one), least recently used out.

    Thread-safe: :class:`ShardStream` reads its next block in a background thread.
    """

    def __init__(self, cache_mb: float = 4000.0) -> None:
        self.cache_bytes = cache_mb * 2**20
        self._items: OrderedDict[Path, ShardInputs] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, load: Callable[[Path], ShardInputs]) -> ShardInputs:
        """The shard at ``path``, from the cache or ``load(path)``."""
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        data = load(path)
        with self._lock:
            self._items[path] = data
            while len(self._items) > 1 and sum(d.nbytes for d in self._items.values()) > self.cache_bytes:
                self._items.popitem(last=False)
        return data


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
        self._cache = ShardCache(cache_mb)
        self._all: tuple[torch.Tensor, ...] | None = None

    def _read(self, path: Path) -> ShardInputs:
        data = self.load(path)
        return data if self.split is None else data.select(data.split == self.split)

    def _get(self, path: Path) -> ShardInputs:
        return self._cache.get(path, self._read)

    def _blocks(self, order: list[Path]) -> list[list[Path]]:
        per_shard = max(self._get(order[0]).nbytes, 1)
        if per_shard * len(order) <= self.cache_bytes:
            return [list(self.paths)]  # canonical order: the same rows whatever the epoch
        size = max(1, int(0.5 * self.cache_bytes // per_shard))
        return [order[i : i + size] for i in range(0, len(order), size)]

    def first(self) -> ShardInputs:
        """The first shard's inputs (of this stream's split), read through the cache."""
        return self._get(self.paths[0])

    def size(self) -> int:
        """Number of galaxies in this stream's split over all its shards (reads them through the cache)."""
        return sum(len(self._get(p)) for p in self.paths)

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


def has_data(shard: Shard) -> np.ndarray:
    """Per galaxy: not flagged ``no_data`` by the preprocessing and at least one finite pixel with ``ivar > 0``."""
    flags = shard.extra.get("flags", np.zeros(len(shard), np.int32))
    valid = (np.isfinite(shard.ivar) & (shard.ivar > 0)).reshape(len(shard), -1).any(1)
    return ((flags & PRE_FLAGS["no_data"]) == 0) & valid


@dataclass
class PairedStamps:
    """The galaxies with data in both a source and a target survey, in the source shards' order."""

    ids: list[str]
    source: list[Shard]
    target: list[Shard]
    source_rows: list[tuple[int, int]]  # (shard, row) of each galaxy in the source shards
    target_rows: list[tuple[int, int]]

    def stamps(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, ivar)`` of the paired galaxies in the ``"source"`` or ``"target"`` survey."""
        shards, rows = (self.source, self.source_rows) if which == "source" else (self.target, self.target_rows)
        return np.stack([shards[k].images[i] for k, i in rows]), np.stack([shards[k].ivar[i] for k, i in rows])


def pair_surveys(
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    stage: str,
    extra: Sequence[str] = ("flags",),
    failures: FailureLog | None = None,
    names: tuple[str, str] = ("source survey", "target survey"),
) -> PairedStamps:
    """Pair the preprocessed shards of two surveys by galaxy id.

    A galaxy of the source survey that is missing from the target survey, or has no valid
    pixel in either (:func:`has_data`), is left out with a row in ``failures`` naming the
    cause (``names`` say how the two surveys are called in that message). Raises
    ``ValueError`` when no galaxy is left.
    """
    src = [read_shard(p, tuple(extra)) for p in source_paths]
    tgt = [read_shard(p, tuple(extra)) for p in target_paths]
    tindex = {str(g): (k, i) for k, s in enumerate(tgt) for i, g in enumerate(s.ids)}
    t_ok = [has_data(t) for t in tgt]
    s_name, t_name = (f"{name} {shards[0].attrs['survey']!r}" for name, shards in zip(names, (src, tgt), strict=True))
    pairs = PairedStamps([], src, tgt, [], [])
    for k, s in enumerate(src):
        s_ok = has_data(s)
        for i, g in enumerate(s.ids):
            g = str(g)
            where = tindex.get(g)
            why = None
            if where is None:
                why = f"not in the {t_name}"
            elif not s_ok[i]:
                why = f"no valid pixel in the {s_name}"
            elif not t_ok[where[0]][where[1]]:
                why = f"no valid pixel in the {t_name}"
            if why:
                if failures is not None:
                    failures.add(g, f"{stage}: {why}")
                continue
            pairs.ids.append(g)
            pairs.source_rows.append((k, i))
            pairs.target_rows.append(where)
    if not pairs.ids:
        raise ValueError(f"{stage}: no galaxy is in both the {s_name} and the {t_name} with valid pixels")
    return pairs
