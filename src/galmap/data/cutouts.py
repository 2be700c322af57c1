"""Reading FITS cutouts in the Legacy Survey cutout service's two layouts.

- **Cube**: the primary HDU holds a (bands, H, W) cube with a celestial WCS and
  the bands in ``BANDS`` (e.g. ``'grz'``) or ``BAND0``, ``BAND1``, ...; a 2-D
  primary image names its band in ``BAND`` or ``FILTER``.
- **One HDU per band**: an empty primary, then one image HDU per band (``BAND``
  or ``FILTER``), with inverse-variance HDUs beside them, told apart by
  ``IMAGETYP = 'invvar'`` (or an ``EXTNAME`` containing ``IVAR``/``INVVAR``); without
  such a keyword, the second HDU of a band is its inverse variance.

The pixel scale (arcsec/pixel) comes from the WCS and the bands from the header;
anything missing is a :class:`CutoutError` naming the file and the keyword.
Images are in the file's unit (nanomaggies per pixel for the Legacy Surveys).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CutoutError(ValueError):
    """A cutout file is unreadable or lacks what galmap needs; the message names the file and the cause."""


@dataclass
class Cutout:
    """One galaxy's cutout: ``images`` (bands, H, W) float32, ``ivar`` alike or None, bands, pixel scale."""

    images: np.ndarray
    ivar: np.ndarray | None
    bands: list[str]
    pixscale_arcsec: float
    meta: dict[str, str] = field(default_factory=dict)

    def good(self) -> np.ndarray:
        """Pixels with data: finite, with ivar > 0 where ivar is known, and not exactly 0.

        The cutout service fills regions without coverage with exact zeros; a real
        sky-subtracted pixel is never exactly 0.0, so those count as no data.
        """
        ok = np.isfinite(self.images) & (self.images != 0)
        if self.ivar is not None:
            ok &= np.isfinite(self.ivar) & (self.ivar > 0)
        return ok

    @property
    def bad_fraction(self) -> float:
        """Fraction of pixels without data (see :meth:`good`)."""
        return float(1.0 - self.good().mean()) if self.images.size else 1.0


def _pixscale(header, path: Path) -> float:
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2)
        except Exception as exc:  # noqa: BLE001 - astropy raises several kinds
            raise CutoutError(f"{path}: unreadable WCS ({exc})") from None
    if not wcs.has_celestial:
        raise CutoutError(f"{path}: no celestial WCS (keywords CTYPE1/2 with CD1_1.. or CDELT1/2): no pixel scale")
    scales = wcs.celestial.proj_plane_pixel_scales()
    values = [abs(float(getattr(s, "value", s))) * 3600.0 for s in scales]
    if not np.isfinite(values).all() or min(values) <= 0:
        raise CutoutError(f"{path}: the WCS gives no usable pixel scale ({values})")
    if abs(values[0] - values[1]) > 1e-3 * max(values):
        raise CutoutError(f"{path}: non-square pixels ({values[0]:.4g}'' x {values[1]:.4g}'')")
    return float(np.mean(values))


def _band_of(header) -> str | None:
    for key in ("BAND", "FILTER"):
        value = header.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _is_ivar(header) -> bool | None:
    kind = str(header.get("IMAGETYP", "")).strip().lower()
    if kind:
        return kind in ("invvar", "ivar", "inverse variance", "weight")
    name = str(header.get("EXTNAME", "")).upper()
    if name:
        return "IVAR" in name or "INVVAR" in name
    return None


def read_cutout(path: str | Path, bands: Sequence[str] | None = None, single_band: str | None = None) -> Cutout:
    """Read a cutout in either layout; with ``bands``, return those bands in that order.

    ``single_band`` names the band of a file holding one 2-D image without a band
    keyword (a single-band service such as IRSA's cutouts of Euclid VIS mosaics).
    """
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise CutoutError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                hdus = [(h.header.copy(), None if h.data is None else np.asarray(h.data, np.float32)) for h in hdul]
        # astropy only warns on a file cut short (it drops the incomplete HDUs or pads the data)
        if cut := next((str(w.message) for w in caught if "truncated" in str(w.message).lower()), None):
            raise OSError(cut)
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files raise OSError, ValueError, TypeError...
        raise CutoutError(f"{path}: cannot be read (truncated or corrupt FITS?): {exc}") from None
    if not hdus:
        raise CutoutError(f"{path}: no HDU")
    primary_header, primary = hdus[0]
    meta = {k: str(primary_header[k]).strip() for k in ("SURVEY", "VERSION") if k in primary_header}
    images: dict[str, np.ndarray] = {}
    ivars: dict[str, np.ndarray] = {}
    if primary is not None and primary.ndim == 3:
        header = primary_header
        if header.get("BANDS"):
            names = list(str(header["BANDS"]).strip())
        else:
            names = [header.get(f"BAND{i}") for i in range(primary.shape[0])]
            if None in names:
                missing = names.index(None)
                raise CutoutError(f"{path}: a {primary.shape[0]}-plane cube without keyword BANDS or BAND{missing}")
        if len(names) != primary.shape[0]:
            raise CutoutError(f"{path}: keyword BANDS={header['BANDS']!r} does not match {primary.shape[0]} planes")
        images = {str(b).strip(): primary[i] for i, b in enumerate(names)}
        # a cube of inverse variances may follow in the next HDU
        if len(hdus) > 1 and hdus[1][1] is not None and hdus[1][1].shape == primary.shape and _is_ivar(hdus[1][0]):
            ivars = {b: hdus[1][1][i] for i, b in enumerate(images)}
    else:
        found = [(h, d) for h, d in hdus if d is not None and d.ndim == 2]
        if not found:
            raise CutoutError(f"{path}: no image data (neither a band cube nor 2-D image HDUs)")
        header = found[0][0]
        if single_band is not None and len(found) == 1 and _band_of(header) is None:
            found = [(header.copy(), found[0][1])]
            found[0][0]["BAND"] = single_band
        for h, d in found:
            band = _band_of(h)
            if band is None:
                raise CutoutError(f"{path}: an image HDU without keyword BAND or FILTER")
            is_ivar = _is_ivar(h)
            if is_ivar is None:
                is_ivar = band in images
            target = ivars if is_ivar else images
            if band in target:
                raise CutoutError(f"{path}: band {band!r} appears twice as {'ivar' if is_ivar else 'image'}")
            target[band] = d
    if extra := sorted(set(ivars) - set(images)):
        raise CutoutError(f"{path}: inverse variance for band(s) {', '.join(extra)} without an image")
    scale = _pixscale(header, path)
    names = list(images) if bands is None else [str(b) for b in bands]
    if missing := [b for b in names if b not in images]:
        raise CutoutError(f"{path}: band(s) {', '.join(missing)} missing (the file has {', '.join(images)})")
    shapes = {images[b].shape for b in names}
    if len(shapes) != 1:
        raise CutoutError(f"{path}: bands of different shapes {sorted(shapes)}")
    cube = np.stack([images[b] for b in names]).astype(np.float32)
    ivar = None
    if ivars:
        if missing_iv := [b for b in names if b not in ivars]:
            raise CutoutError(f"{path}: inverse variance missing for band(s) {', '.join(missing_iv)}")
        ivar = np.stack([ivars[b] for b in names]).astype(np.float32)
        if ivar.shape != cube.shape:
            raise CutoutError(f"{path}: inverse variance {ivar.shape} and images {cube.shape} differ")
    return Cutout(cube, ivar, names, scale, meta)


def verify_cutout(
    path: str | Path,
    bands: Sequence[str] | None = None,
    shape: tuple[int, int] | None = None,
    single_band: str | None = None,
) -> str | None:
    """``None`` if ``path`` is a readable cutout with ``bands`` of ``shape`` (pixels) and data, else why not.

    Meant as the downloader's ``verify``: a partly bad cutout passes (its bad-pixel
    fraction is recorded when it is ingested); an unreadable, wrongly shaped or
    entirely bad one does not.
    """
    try:
        cut = read_cutout(path, bands, single_band)
    except CutoutError as exc:
        return str(exc)
    if shape is not None and cut.images.shape[1:] != tuple(shape):
        return f"{path}: shape {cut.images.shape[1:]} instead of {tuple(shape)}"
    if cut.bad_fraction >= 1.0:
        return f"{path}: no finite pixel with positive inverse variance"
    return None


def cutout_hdulist(
    images: np.ndarray,
    bands: Sequence[str],
    pixscale_arcsec: float,
    ivar: np.ndarray | None = None,
    layout: str = "cube",
    ra: float = 0.0,
    dec: float = 0.0,
    meta: dict[str, str] | None = None,
):
    """An ``astropy.io.fits.HDUList`` of one cutout in the cutout service's ``"cube"`` or ``"hdus"`` layout.

    ``images`` (and ``ivar``) are (bands, H, W); the WCS is a TAN projection
    centred on (``ra``, ``dec``) in degrees with square pixels of ``pixscale_arcsec``.
    """
    from astropy.io import fits

    nb, h, w = images.shape
    if len(bands) != nb:
        raise ValueError(f"{len(bands)} band names for {nb} image planes")
    wcs = fits.Header()
    wcs.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                "CRPIX1": (w + 1) / 2, "CRPIX2": (h + 1) / 2, "CD1_1": -pixscale_arcsec / 3600.0, "CD1_2": 0.0,
                "CD2_1": 0.0, "CD2_2": pixscale_arcsec / 3600.0})  # fmt: skip
    head = fits.Header({k: v for k, v in (meta or {}).items()})
    if layout == "cube":
        hdr = head.copy()
        hdr.update(wcs)
        hdr["BANDS"] = "".join(bands) if all(len(b) == 1 for b in bands) else ""
        for i, b in enumerate(bands):
            hdr[f"BAND{i}"] = b
        hdus = [fits.PrimaryHDU(np.asarray(images, np.float32), header=hdr)]
        if ivar is not None:
            ih = wcs.copy()
            ih["IMAGETYP"] = "invvar"
            hdus.append(fits.ImageHDU(np.asarray(ivar, np.float32), header=ih))
        return fits.HDUList(hdus)
    if layout != "hdus":
        raise ValueError(f"unknown cutout layout {layout!r} (cube or hdus)")
    hdus = [fits.PrimaryHDU(header=head)]
    for i, b in enumerate(bands):
        for kind, data in (("image", images), ("invvar", ivar)):
            if data is None:
                continue
            hdr = head.copy()
            hdr.update(wcs)
            hdr["BAND"] = b
            hdr["IMAGETYP"] = kind
            hdus.append(fits.ImageHDU(np.asarray(data[i], np.float32), header=hdr))
    return fits.HDUList(hdus)
