"""MaNGA galaxies for the u,g,r,i,z -> Hα stage: DAP Hα maps and the SDSS u,g,r,i,z preimaging made for MaNGA.

A MaNGA galaxy is named by its ``plate-ifu`` (``7815-3702``), which is also its galaxy
``id`` in the shards. Two files per galaxy, both from SDSS DR17 and both fetched by
:func:`galmap.data.archives.fetch_manga_shard`:

- the DAP ``MAPS`` file (``HYB10-MILESHC-MASTARSSP``): the Hα-6564 channel of
  ``EMLINE_GFLUX`` in **1e-17 erg/s/cm^2 per spaxel** (0.5 arcsec spaxels), its
  ``EMLINE_GFLUX_IVAR`` and ``EMLINE_GFLUX_MASK`` (a masked spaxel gets ``ivar = 0``);
  its primary header gives the galaxy's ``MANGAID``, ``DESIGNID`` and position
  (``OBJRA``, ``OBJDEC``, degrees);
- the MaNGA **preimaging** file ``preimage-<mangaid>.fits.gz`` of the galaxy's plate
  design: SDSS u, g, r, i, z images (NSA reprocessing of the SDSS imaging, 0.396
  arcsec pixels, a TAN WCS) in **nanomaggies per pixel**, one ``'<band> img'`` and
  one ``'<band> ivar'`` (1/nanomaggy^2) HDU per band.

:func:`ingest_manga` puts either onto a configured survey's grid (``stamp_px`` pixels
of ``pixscale_arcsec``) centred on the galaxy, through the WCS with sub-pixel
precision (:func:`galmap.core.resample.resample_window`: Lanczos-3, flux per pixel
conserved, variance propagated). Resampling conserves flux, so the Hα map in
1e-17 erg/s/cm^2 per spaxel becomes 1e-17 erg/s/cm^2 per pixel of the ``halpha``
survey: the unit of the mock's Hα maps (:data:`galmap.core.surveys.BAND_UNITS`). Pixels
outside the IFU or the image have ``ivar = 0``. Images must be north-up (a flip of
either axis is undone; a rotated WCS is an error naming the file).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.resample import resample_window
from galmap.data.cutouts import CutoutError

log = logging.getLogger("galmap")

#: the two kinds of MaNGA download: the DAP Hα maps and the u,g,r,i,z preimaging
KINDS = ("halpha", "ugriz")
HALPHA_UNIT = "1e-17 erg/s/cm^2"
_PLATEIFU = re.compile(r"^\d{4,5}-\d{3,5}$")
_MANGAID = re.compile(r"^\d{1,2}-\d{1,8}$")


def check_plateifu(plateifu: str) -> str:
    """``plateifu`` when it has the MaNGA form (``7815-3702``), else a ``ValueError`` naming it."""
    text = str(plateifu).strip()
    if not _PLATEIFU.match(text):
        raise ValueError(f"MaNGA plate-IFU {plateifu!r} is not of the form 1234-5678 (plate-ifudesign)")
    return text


def check_mangaid(mangaid: str) -> str:
    """``mangaid`` when it has the MaNGA form (``1-113540``), else a ``ValueError`` naming it."""
    text = str(mangaid).strip()
    if not _MANGAID.match(text):
        raise ValueError(f"MaNGA id {mangaid!r} is not of the form 1-113540")
    return text


def manga_sample(config: Mapping[str, Any]) -> pd.DataFrame:
    """The configured MaNGA galaxies: ``id`` (= plate-IFU), ``plateifu``, ``shard`` (config order)."""
    ids = [check_plateifu(p) for p in config["data"]["manga"]["plateifus"]]
    if dup := sorted({p for p in ids if ids.count(p) > 1}):
        raise ValueError(f"data.manga.plateifus lists {', '.join(dup)} more than once")
    size = int(config["shard_size"])
    return pd.DataFrame({"id": ids, "plateifu": ids, "shard": [i // size for i in range(len(ids))]})


def _open(path: str | Path):
    from astropy.io import fits

    try:
        return fits.open(path, memmap=False)
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files raise OSError, ValueError, EOFError...
        raise CutoutError(f"{path}: cannot be read (truncated or corrupt FITS?): {exc}") from None


def fits_checksum_problem(path: str | Path) -> str | None:
    """``None`` when every HDU's FITS ``CHECKSUM``/``DATASUM`` (where the file has them) match, else why not."""
    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, checksum=True) as hdul:
                for hdu in hdul:
                    _ = hdu.data
        except Exception as exc:  # noqa: BLE001 - see _open
            return f"cannot be read (truncated or corrupt FITS?): {exc}"
    bad = [str(w.message) for w in caught if any(k in str(w.message).lower() for k in ("checksum", "datasum"))]
    return f"FITS checksum mismatch: {bad[0]}" if bad else None


def maps_meta(path: str | Path) -> dict[str, Any]:
    """``plateifu, mangaid, designid, ra, dec`` (degrees) from a DAP MAPS file's primary header."""
    with _open(path) as hdul:
        head = hdul[0].header
    missing = [k for k in ("MANGAID", "DESIGNID") if k not in head]
    if missing or not any(k in head for k in ("OBJRA", "IFURA")):
        raise CutoutError(f"{path}: the primary header lacks {', '.join(missing) or 'OBJRA/OBJDEC'} (not a MAPS file?)")
    ra = float(head.get("OBJRA", head.get("IFURA")))
    dec = float(head.get("OBJDEC", head.get("IFUDEC")))
    return {
        "plateifu": str(head.get("PLATEIFU", "")).strip(),
        "mangaid": check_mangaid(head["MANGAID"]),
        "designid": int(head["DESIGNID"]),
        "ra": ra,
        "dec": dec,
    }


@dataclass
class SkyImages:
    """Images ``(B, H, W)`` with inverse variance, their celestial WCS and pixel scale (arcsec)."""

    planes: np.ndarray
    ivar: np.ndarray
    wcs: Any
    pixscale_arcsec: float
    flip_x: bool = False
    flip_y: bool = False

    def pixel_of(self, ra: float, dec: float) -> tuple[float, float]:
        """The 0-based (x, y) position of (``ra``, ``dec``) in degrees in ``planes`` (after any flip)."""
        x, y = (float(v) for v in self.wcs.world_to_pixel_values(float(ra), float(dec)))
        h, w = self.planes.shape[-2:]
        return (w - 1 - x if self.flip_x else x), (h - 1 - y if self.flip_y else y)


def _north_up(planes: np.ndarray, ivar: np.ndarray, wcs, path: str | Path) -> SkyImages:
    """Undo an axis flip so that the images are north-up, east-left; a rotated WCS is an error."""
    m = wcs.pixel_scale_matrix  # deg/pixel
    scale = float(np.sqrt(abs(np.linalg.det(m)))) * 3600.0
    if not np.isfinite(scale) or scale <= 0:
        raise CutoutError(f"{path}: the WCS gives no usable pixel scale")
    if max(abs(m[0, 1]), abs(m[1, 0])) > 1e-3 * abs(m).max():
        raise CutoutError(f"{path}: the image is rotated against north (WCS {m.tolist()}); not supported")
    flip_x, flip_y = bool(m[0, 0] > 0), bool(m[1, 1] < 0)  # east to the right / north down
    if flip_x:
        planes, ivar = planes[..., ::-1], ivar[..., ::-1]
    if flip_y:
        planes, ivar = planes[..., ::-1, :], ivar[..., ::-1, :]
    return SkyImages(np.ascontiguousarray(planes), np.ascontiguousarray(ivar), wcs, scale, flip_x, flip_y)


def read_halpha_map(path: str | Path) -> SkyImages:
    """The Hα-6564 map of a DAP MAPS file (1e-17 erg/s/cm^2 per spaxel) as ``(1, H, W)``; masked spaxels ivar 0."""
    from astropy.wcs import WCS

    with _open(path) as hdul:
        names = {h.name for h in hdul}
        need = [n for n in ("EMLINE_GFLUX", "EMLINE_GFLUX_IVAR", "EMLINE_GFLUX_MASK") if n not in names]
        if need:
            raise CutoutError(f"{path}: no {', '.join(need)} extension (not a DAP MAPS file?)")
        header = hdul["EMLINE_GFLUX"].header
        channel = next(
            (int(k[1:]) - 1 for k, v in header.items() if k.startswith("C") and k[1:].isdigit()
             and str(v).strip().lower().startswith("ha-")),
            None,
        )  # fmt: skip
        if channel is None:
            raise CutoutError(f"{path}: EMLINE_GFLUX has no Ha-6564 channel")
        unit = str(header.get("BUNIT", "1E-17 erg/s/cm^2/spaxel")).replace(" ", "").lower()
        if not unit.startswith("1e-17erg/s/cm^2"):
            raise CutoutError(f"{path}: EMLINE_GFLUX is in {header['BUNIT']!r}, not 1E-17 erg/s/cm^2/spaxel")
        try:
            flux = np.asarray(hdul["EMLINE_GFLUX"].data[channel], np.float32)
            ivar = np.asarray(hdul["EMLINE_GFLUX_IVAR"].data[channel], np.float32)
            mask = np.asarray(hdul["EMLINE_GFLUX_MASK"].data[channel]) != 0
        except Exception as exc:  # noqa: BLE001 - a truncated file fails only when its data are read
            raise CutoutError(f"{path}: cannot read the Hα planes (truncated file?): {exc}") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header).celestial
    ivar = np.where(mask | ~np.isfinite(flux) | ~np.isfinite(ivar), 0.0, ivar).astype(np.float32)
    return _north_up(np.nan_to_num(flux)[None], ivar[None], wcs, path)


def read_preimage(path: str | Path, bands: Sequence[str]) -> SkyImages:
    """The ``bands`` of a MaNGA preimaging file (nanomaggies per pixel) as ``(B, H, W)`` with inverse variance."""
    from astropy.wcs import WCS

    with _open(path) as hdul:
        names = {h.name.strip().lower(): h for h in hdul}
        missing = [b for b in bands if f"{b} img".lower() not in names or f"{b} ivar".lower() not in names]
        if missing:
            raise CutoutError(f"{path}: no '<band> img'/'<band> ivar' HDU for band(s) {', '.join(missing)}")
        planes, ivars, wcs = [], [], None
        for b in bands:
            img_hdu = names[f"{b} img".lower()]
            unit = str(img_hdu.header.get("BUNIT", img_hdu.header.get("FLUXUNIT", "nanomaggies"))).lower()
            if "nanomagg" not in unit and "nmgy" not in unit:
                raise CutoutError(f"{path}: band {b} is in {unit!r}, not nanomaggies")
            try:
                planes.append(np.asarray(img_hdu.data, np.float32))
                ivars.append(np.asarray(names[f"{b} ivar".lower()].data, np.float32))
            except Exception as exc:  # noqa: BLE001 - truncated data
                raise CutoutError(f"{path}: cannot read band {b} (truncated file?): {exc}") from None
            if planes[-1].shape != planes[0].shape or ivars[-1].shape != planes[0].shape:
                raise CutoutError(f"{path}: band {b} is {planes[-1].shape}, band {bands[0]} {planes[0].shape}")
            if wcs is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wcs = WCS(img_hdu.header).celestial
                if not wcs.has_celestial:
                    raise CutoutError(f"{path}: band {b} has no celestial WCS")
    planes_a, ivar_a = np.stack(planes), np.stack(ivars)
    ivar_a = np.where(np.isfinite(planes_a) & np.isfinite(ivar_a) & (ivar_a > 0), ivar_a, 0.0).astype(np.float32)
    return _north_up(np.nan_to_num(planes_a), ivar_a, wcs, path)


def stamp_on_grid(sky: SkyImages, ra: float, dec: float, stamp_px: int, pixscale_arcsec: float) -> tuple:
    """``(images, ivar)`` ``(B, stamp_px, stamp_px)``: ``sky`` resampled onto the grid centred on (ra, dec)."""
    x, y = sky.pixel_of(ra, dec)
    if not (np.isfinite(x) and np.isfinite(y)):
        raise CutoutError(f"(ra, dec) = ({ra}, {dec}) has no pixel position in the image's WCS")
    return resample_window(sky.planes, sky.ivar, sky.pixscale_arcsec, (float(x), float(y)), stamp_px, pixscale_arcsec)


def ingest_manga(
    rows: pd.DataFrame,
    kind: str,
    survey: str,
    bands: Sequence[str],
    stamp_px: int,
    pixscale_arcsec: float,
    psf_fwhm_arcsec: Sequence[float],
    failures: FailureLog | None = None,
    progress: bool = True,
) -> Shard:
    """One raw shard of MaNGA galaxies (``rows``: ``id, file, ra, dec``) of ``kind`` ``halpha`` or ``ugriz``.

    A row without a file keeps its place with ``ivar = 0`` (the caller recorded why);
    a file that cannot be read, or has no data at the galaxy, is a failure naming it.
    ``progress``: a progress bar over the files.
    """
    from galmap.data.ingest import raw_shard

    if kind not in KINDS:
        raise ValueError(f"MaNGA data kind {kind!r} is not one of {KINDS}")
    n, nb = len(rows), len(bands)
    images = np.zeros((n, nb, stamp_px, stamp_px), np.float32)
    ivar = np.zeros_like(images)
    native = np.full(n, np.nan)
    files = zip(rows["id"], rows["file"], rows["ra"], rows["dec"], strict=True)
    bar = tqdm(files, total=n, desc=f"ingest {survey}", unit="file", disable=not progress, mininterval=2)
    for i, (gid, path, ra, dec) in enumerate(bar):
        if not path:
            continue
        try:
            sky = read_halpha_map(path) if kind == "halpha" else read_preimage(path, bands)
            images[i], ivar[i] = stamp_on_grid(sky, ra, dec, stamp_px, pixscale_arcsec)
        except CutoutError as exc:
            if failures is not None:
                failures.add(gid, f"{survey}: {exc}")
            continue
        native[i] = sky.pixscale_arcsec
        if failures is not None and not (ivar[i] > 0).any():
            failures.add(gid, f"{survey}: {path}: no pixel with data in the {stamp_px}-pixel stamp at ({ra}, {dec})")
    units = [HALPHA_UNIT] if kind == "halpha" else ["nanomaggy"] * nb
    extra = {"bad_fraction": (ivar <= 0).mean(axis=(1, 2, 3)).astype(np.float32), "native_pixscale_arcsec": native}
    return raw_shard(images, ivar, rows["id"], survey, bands, pixscale_arcsec, psf_fwhm_arcsec, extra,
                      {"units": units, "source": f"manga-{kind}"})  # fmt: skip
