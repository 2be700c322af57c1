"""Reading and writing the project's files: HDF5 image shards and Parquet tables.

Image stores follow DESIGN.md: datasets ``images`` float32 (N, bands, H, W),
``ivar`` (same shape, inverse variance in 1/image-unit^2), ``ids`` (N,) strings,
and attributes ``bands``, ``pixscale_arcsec``, ``survey``, ``psf_fwhm_arcsec``
(one per band). Stages may add datasets (``psf``, ``segmap``, ``mask``, ...).

Every writer writes to a temporary name in the same directory and renames it
into place, so an interrupted job never leaves a half-written file under its
final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

REQUIRED_DATASETS = ("images", "ivar", "ids")
REQUIRED_ATTRS = ("bands", "pixscale_arcsec", "survey", "psf_fwhm_arcsec")

# the process umask (read once: os.umask can only be read by setting it), for the
# permissions of files written through a temporary name
_UMASK = os.umask(0)
os.umask(_UMASK)


class ShardError(OSError):
    """An image shard is missing, truncated, corrupt or not in the galmap format."""


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def training_checkpoint(model_path: str | Path) -> Iterator[Path]:
    """The checkpoint file of the training that writes ``model_path``: ``checkpoint.pt`` beside it.

    Use as ``with training_checkpoint(model_path) as ckpt:`` around the training
    (:func:`galmap.nn.training.train` writes ``ckpt`` after every epoch) and the writing
    of its outputs: the checkpoint is removed once the block completes and kept when
    it raises or the job is killed, so that a rerun resumes from it.
    """
    checkpoint = Path(model_path).with_name("checkpoint.pt")
    yield checkpoint
    checkpoint.unlink(missing_ok=True)


@dataclass
class Shard:
    """An in-memory image shard.

    Attributes
    ----------
    images : float32 array (N, bands, H, W), in the survey's flux unit per pixel
        (nanomaggies for broad bands; 1e-17 erg/s/cm^2 for Ha).
    ivar : float32 array like ``images``; inverse variance, 0 where a pixel is unusable.
    ids : array of str (N,)
    attrs : dict with at least ``bands`` (list of str), ``pixscale_arcsec`` (float,
        arcsec/pixel), ``survey`` (str), ``psf_fwhm_arcsec`` (list of float, one per band).
    extra : further datasets (name -> array) stored alongside.
    """

    images: np.ndarray
    ivar: np.ndarray
    ids: np.ndarray
    attrs: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def bands(self) -> list[str]:
        return [str(b) for b in self.attrs["bands"]]


def write_shard(path: str | Path, shard: Shard, compression: str | None = "gzip") -> None:
    """Write ``shard`` to ``path`` atomically (temporary file, then rename)."""
    n = len(shard.ids)
    if shard.images.shape[0] != n or shard.ivar.shape != shard.images.shape:
        raise ValueError(
            f"shard for {path}: images {shard.images.shape}, ivar {shard.ivar.shape} and {n} ids do not match"
        )
    opts: dict[str, Any] = {}
    if compression:
        opts = {"compression": compression, "compression_opts": 1, "shuffle": True}
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as fh:
            fh.create_dataset("images", data=shard.images.astype(np.float32), track_times=False, **opts)
            fh.create_dataset("ivar", data=shard.ivar.astype(np.float32), track_times=False, **opts)
            fh.create_dataset(
                "ids", data=np.asarray(shard.ids, dtype=object), dtype=h5py.string_dtype(), track_times=False
            )
            for name, arr in shard.extra.items():
                arr = np.asarray(arr)
                kw = opts if arr.ndim >= 2 and arr.size > 1024 else {}
                fh.create_dataset(name, data=arr, track_times=False, **kw)
            for key, value in shard.attrs.items():
                fh.attrs[key] = _attr_value(value)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, Mapping):
        raise TypeError("nested mappings cannot be HDF5 attributes")
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_shard(path: str | Path, datasets: tuple[str, ...] | None = None) -> Shard:
    """Read an image shard, checking its format.

    Parameters
    ----------
    path : the ``.h5`` file.
    datasets : extra datasets to load besides images/ivar/ids (``None``: all of them).

    Raises
    ------
    ShardError
        If the file is missing, truncated or corrupt, or lacks a required dataset
        or attribute; the message names the file and the cause.
    """
    path = Path(path)
    if not path.exists():
        raise ShardError(f"image shard {path} does not exist")
    try:
        with h5py.File(path, "r") as fh:
            missing = [d for d in REQUIRED_DATASETS if d not in fh]
            if missing:
                raise ShardError(f"image shard {path} lacks dataset(s) {', '.join(missing)}")
            missing_attrs = [a for a in REQUIRED_ATTRS if a not in fh.attrs]
            if missing_attrs:
                raise ShardError(f"image shard {path} lacks attribute(s) {', '.join(missing_attrs)}")
            images = fh["images"][...]
            ivar = fh["ivar"][...]
            ids = np.array([_decode(i) for i in fh["ids"][...]], dtype=object)
            attrs = {k: _decode(v) for k, v in fh.attrs.items()}
            names = [k for k in fh if k not in REQUIRED_DATASETS]
            if datasets is not None:
                names = [k for k in names if k in datasets]
            extra = {k: fh[k][...] for k in names}
    except ShardError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise ShardError(f"image shard {path} cannot be read (truncated or corrupt HDF5?): {exc}") from None
    if images.ndim != 4 or images.shape != ivar.shape or images.shape[0] != len(ids):
        raise ShardError(
            f"image shard {path} has inconsistent shapes: images {images.shape}, ivar {ivar.shape}, {len(ids)} ids"
        )
    if len(attrs["bands"]) != images.shape[1]:
        raise ShardError(
            f"image shard {path}: attribute bands={attrs['bands']} does not match {images.shape[1]} image planes"
        )
    return Shard(images=images, ivar=ivar, ids=ids, attrs=attrs, extra=extra)


def write_table(path: str | Path, table: pd.DataFrame) -> None:
    """Write a table atomically; Parquet for ``.parquet``, CSV for ``.csv``."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unknown table format for {path}: use .parquet or .csv")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV table with a clear error naming the file."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"table {path} does not exist") from None
    except Exception as exc:  # pyarrow raises several unrelated types
        raise OSError(f"table {path} cannot be read (truncated or corrupt?): {exc}") from None
