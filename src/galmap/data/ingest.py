"""A folder of FITS cutouts (and an optional catalog) into galmap's raw image shards.

:func:`inventory` lists the galaxies: one per FITS file (``*.fits``, ``*.fits.gz``,
``*.fit``), its id from the catalog (``id`` or ``iauname``, matched to the file
name, or a ``file`` column) or else the file name, sanitised for paths
(:func:`galmap.core.ids.sanitize_id`); of files with the same id the first is used and
the others are reported as problems (named, not dropped silently).
Catalog rows without a file are reported, not dropped.

:func:`ingest_cutouts` reads each file (:mod:`galmap.data.cutouts`, either layout of
the cutout service), keeps the survey's bands in the configured order and puts
them on the survey's grid (``stamp_px`` pixels of ``pixscale_arcsec``, centred on
the cutout's centre, :mod:`galmap.core.resample`: a cutout already on that grid is
only cropped). Without inverse-variance HDUs the noise is estimated per band
(:func:`noise_sigma`) and ``ivar_estimated`` records it. A file that cannot be read or lacks a band keeps its row with
``ivar = 0`` and is named in the failures table with the cause; pixels without
data (non-finite, zero-filled) get ``ivar = 0`` and their fraction is stored per
galaxy in ``bad_fraction``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.ids import sanitize_id
from galmap.core.io import Shard
from galmap.core.resample import resample_stamps
from galmap.core.stats import robust_std
from galmap.data.cutouts import CutoutError, read_cutout

log = logging.getLogger("galmap")

FITS_PATTERNS = ("*.fits", "*.fits.gz", "*.fit", "*.fits.fz")
#: colour composites (Galaxy Zoo, Galaxy10 DECaLS): no calibration, image-only stages
COLOUR_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.PNG", "*.JPG", "*.JPEG")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".fits.gz", ".fits.fz", ".fits", ".fit", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def inventory(
    folder: str | Path, catalog: str | Path | None = None, patterns: Sequence[str] = FITS_PATTERNS
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The galaxies of a cutout folder: a table ``id, file[, catalog columns]`` and (id, reason) problems.

    Files are those matching ``patterns`` in ``folder``; a catalog's ``file`` column
    is relative to the catalog's own folder (or to ``folder``). Rows are sorted by
    id, so shards do not depend on the order of the file system.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data.local.path: {folder} is not a folder")
    files = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    by_stem = {_stem(p): p for p in files}
    problems: list[tuple[str, str]] = []
    if catalog is None:
        table = pd.DataFrame({"id": [sanitize_id(s) for s in by_stem], "file": [str(p) for p in by_stem.values()]})
    else:
        cat = pd.read_csv(catalog)
        key = next((c for c in ("id", "iauname") if c in cat.columns), None)
        if key is None and "file" not in cat.columns:
            raise ValueError(
                f"catalog {catalog}: needs a column 'id' or 'iauname' (or 'file'); it has {list(cat.columns)}"
            )
        raw = cat[key].astype(str) if key else cat["file"].map(lambda f: _stem(Path(str(f))))

        def _file(f: object) -> Path:
            near = Path(catalog).parent / str(f)
            return near if near.is_file() else folder / str(f)

        files_of = cat["file"].map(_file) if "file" in cat.columns else raw.map(lambda s: by_stem.get(s))
        cat = cat.assign(id=[sanitize_id(r) for r in raw], file=[str(f) if f is not None else "" for f in files_of])
        missing = cat["file"].eq("") | ~cat["file"].map(lambda f: bool(f) and Path(f).is_file())
        problems += [(gid, f"no FITS file for this catalog row in {folder}") for gid in cat.loc[missing, "id"]]
        listed = {Path(f).resolve() for f in cat.loc[~missing, "file"]}
        extra = [p for p in files if p.resolve() not in listed]
        extra_rows = pd.DataFrame({"id": [sanitize_id(_stem(p)) for p in extra], "file": [str(p) for p in extra]})
        table = pd.concat([cat.loc[~missing], extra_rows], ignore_index=True)
        problems += [(gid, "FITS file not in the catalog (no labels)") for gid in extra_rows["id"]]
    dup = table["id"].duplicated(keep="first")
    if dup.any():  # the first file of an id is ingested; every other one is named, not silently dropped
        first = table.loc[~dup].set_index("id")["file"]
        problems += [
            (gid, f"duplicate galaxy id after sanitising: {f or 'a catalog row'} has the id of {first[gid]}; skipped")
            for gid, f in zip(table.loc[dup, "id"], table.loc[dup, "file"], strict=True)
        ]
        log.warning("%s: %d duplicate galaxy ids after sanitising (first kept): %s", folder, int(dup.sum()),
                    ", ".join(sorted(set(table.loc[dup, "id"]))[:10]))  # fmt: skip
        table = table.loc[~dup]
    cols = ["id", "file"] + [c for c in table.columns if c not in ("id", "file")]
    return table[cols].sort_values("id", ignore_index=True), problems


def _mad_sigma(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    if v.size < 10:
        return np.nan
    return robust_std(v)


def noise_sigma(image: np.ndarray, good: np.ndarray) -> float:
    """Per-pixel noise of a 2-D image (its unit), robust to the galaxy filling the stamp.

    From second differences along rows, ``(x[i] - (x[i-1] + x[i+1]) / 2) / sqrt(1.5)``
    (white noise keeps its sigma; smooth light and linear gradients cancel), over
    the faintest half of the image (5x5-smoothed), as a median absolute deviation.
    On the mock's stamps, filled by bright galaxies, it gives the sky sigma to ~10 %.
    """
    from scipy import ndimage

    x = np.where(good, image, 0.0).astype(np.float64)
    d = (x[:, 1:-1] - 0.5 * (x[:, :-2] + x[:, 2:])) / np.sqrt(1.5)
    ok = good[:, 1:-1] & good[:, :-2] & good[:, 2:]
    smooth = ndimage.uniform_filter(x, 5)[:, 1:-1]
    if ok.sum() < 20:
        return np.nan
    faint = ok & (smooth <= np.percentile(smooth[ok], 50))
    return _mad_sigma(d[faint])


def ingest_cutouts(
    rows: pd.DataFrame,
    survey: str,
    bands: Sequence[str],
    stamp_px: int,
    pixscale_arcsec: float,
    psf_fwhm_arcsec: Sequence[float],
    failures: FailureLog | None = None,
    progress: bool = True,
) -> Shard:
    """One raw shard of the galaxies ``rows`` (``id, file``) on the survey's grid (see the module docstring).

    A row whose ``file`` is empty keeps its place with ``ivar = 0`` and no failure
    (the caller knows why there is no file and records it). ``progress``: a progress bar over the files.
    """
    n, nb = len(rows), len(bands)
    images = np.zeros((n, nb, stamp_px, stamp_px), np.float32)
    ivar = np.zeros_like(images)
    estimated = np.zeros(n, bool)
    bad = np.ones(n, np.float32)
    native = np.full(n, np.nan)
    files = zip(rows["id"], rows["file"], strict=True)
    bar = tqdm(files, total=n, desc=f"ingest {survey}", unit="file", disable=not progress, mininterval=2)
    for i, (gid, path) in enumerate(bar):
        if not path:  # no file for this galaxy (the caller recorded why): the row stays, without data
            continue
        try:
            cut = read_cutout(path, bands, bands[0] if len(bands) == 1 else None)
        except CutoutError as exc:
            if failures is not None:
                failures.add(gid, f"local: {exc}")
            continue
        good = cut.good()
        if cut.ivar is None:
            sig = np.array([noise_sigma(cut.images[b], good[b]) for b in range(nb)])
            civ = np.where(good, 1.0 / np.where(sig > 0, sig, np.nan)[:, None, None] ** 2, 0.0)
            estimated[i] = True
        else:
            civ = np.where(good, cut.ivar, 0.0)
        img, iv = resample_stamps(
            np.where(good, cut.images, 0)[None], np.nan_to_num(civ)[None], cut.pixscale_arcsec, stamp_px,
            pixscale_arcsec,
        )  # fmt: skip
        images[i], ivar[i] = img[0], iv[0]
        bad[i] = float(1.0 - (iv[0] > 0).mean())
        native[i] = cut.pixscale_arcsec
        if failures is not None and bad[i] >= 1.0:
            failures.add(gid, f"local: {path}: no pixel with data in the {stamp_px}-pixel stamp")
    extra = {"ivar_estimated": estimated, "bad_fraction": bad, "native_pixscale_arcsec": native}
    return raw_shard(images, ivar, rows["id"], survey, bands, pixscale_arcsec, psf_fwhm_arcsec, extra,
                      {"units": ["nanomaggy"] * nb, "source": "local"})  # fmt: skip


def raw_shard(
    images: np.ndarray,
    ivar: np.ndarray,
    ids: Sequence[str],
    survey: str,
    bands: Sequence[str],
    pixscale_arcsec: float,
    psf_fwhm_arcsec: Sequence[float],
    extra: dict[str, np.ndarray],
    more_attrs: dict,
) -> Shard:
    """A raw shard on the survey grid; ``sky_sigma`` per band is the median noise of the pixels with data."""
    sky = []
    for b in range(len(bands)):
        iv = ivar[:, b][ivar[:, b] > 0]
        s = float(np.median(1 / np.sqrt(iv))) if iv.size else 0.0
        sky.append(s if np.isfinite(s) else 0.0)
    attrs = {
        "survey": survey,
        "bands": list(bands),
        "pixscale_arcsec": float(pixscale_arcsec),
        "psf_fwhm_arcsec": [float(f) for f in psf_fwhm_arcsec],
        "sky_sigma": sky,
    } | more_attrs
    return Shard(images=images, ivar=ivar, ids=np.asarray([str(g) for g in ids], dtype=object), attrs=attrs,
                 extra=extra)  # fmt: skip


def read_colour_image(path: str | Path) -> np.ndarray:
    """A PNG/JPEG colour composite as float32 ``(3, H, W)`` in [0, 1], channels R, G, B."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CutoutError(f"{path}: cannot be read as an image (truncated or not PNG/JPEG?): {exc}") from None
    return np.moveaxis(rgb, -1, 0)


def ingest_colour_images(
    rows: pd.DataFrame,
    survey: str,
    bands: Sequence[str],
    stamp_px: int,
    pixscale_arcsec: float,
    psf_fwhm_arcsec: Sequence[float],
    failures: FailureLog | None = None,
    progress: bool = True,
) -> Shard:
    """One raw shard of colour composites (``rows``: ``id, file``): the whole image resized to the stamp.

    The composites of the Galaxy Zoo DECaLS images put z in red, r in green and g in
    blue, so the survey's three bands (in wavelength order) take the channels B, G, R.
    Values stay relative intensities (0-1, no calibration: ``attrs['calibrated']``
    is false, units ``relative``); the image is centre-cropped to a square and
    resampled by area (values are intensities, not fluxes); the noise is estimated
    per channel (:func:`noise_sigma`), at least the 8-bit quantisation noise. ``progress``: a progress bar.
    """
    if len(bands) != 3:
        raise ValueError(f"colour images have 3 channels; survey {survey!r} has {len(bands)} bands ({bands})")
    n = len(rows)
    images = np.zeros((n, 3, stamp_px, stamp_px), np.float32)
    ivar = np.zeros_like(images)
    quantum = 1.0 / 255.0 / np.sqrt(12.0)
    files = zip(rows["id"], rows["file"], strict=True)
    bar = tqdm(files, total=n, desc=f"ingest {survey}", unit="file", disable=not progress, mininterval=2)
    for i, (gid, path) in enumerate(bar):
        if not path:
            continue
        try:
            rgb = read_colour_image(path)
        except CutoutError as exc:
            if failures is not None:
                failures.add(gid, f"local: {exc}")
            continue
        h, w = rgb.shape[1:]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        cube = rgb[::-1, y0 : y0 + side, x0 : x0 + side]  # B, G, R -> the survey's bands blue to red
        good = np.ones(cube.shape, bool)
        sig = np.array([max(noise_sigma(cube[b], good[b]), quantum) for b in range(3)])
        civ = np.broadcast_to(1.0 / sig[:, None, None] ** 2, cube.shape)
        scale_in = pixscale_arcsec * stamp_px / side  # the whole image fills the stamp
        img, iv = resample_stamps(cube[None], np.ascontiguousarray(civ)[None], scale_in, stamp_px, pixscale_arcsec)
        area = (pixscale_arcsec / scale_in) ** 2  # resampling conserves flux; keep intensities instead
        images[i], ivar[i] = img[0] / area, iv[0] * area**2
    extra = {"bad_fraction": (ivar <= 0).mean(axis=(1, 2, 3)).astype(np.float32)}
    return raw_shard(images, ivar, rows["id"], survey, bands, pixscale_arcsec, psf_fwhm_arcsec, extra,
                      {"units": ["relative"] * 3, "source": "local-colour", "calibrated": False})  # fmt: skip
