"""Mock galaxies drawn afresh as Galaxy Zoo DECaLS colour images.

Galaxy Zoo DECaLS (Walmsley et al. 2022) showed each galaxy as a 424x424 g,r,z
colour image from the Legacy Survey cutout service at a pixel scale chosen from
the galaxy's size, ``max(min(0.04 r50, 0.02 r90), 0.1)`` arcsec/px
(:func:`galmap.core.colour.gz_decals_pixscale`), coloured with
:func:`galmap.core.colour.gz_decals_rgb`. The cutout service resamples the
survey's native 0.262''/px images to that scale (Lanczos-3); here the mock galaxy
is drawn by its own renderer (:class:`galmap.mock.render.GalaxyModel`, the same
profiles, PSF, depth and noise as the mock's DECaLS stamps) on a native-scale field
as large as the Galaxy Zoo frame, with fresh noise, then resampled the same way.
No stamp is padded. The radii r50 and r90 are those of the circular curve of growth
of the galaxy's noiseless r-band image (no neighbours), standing in for the NSA
Petrosian radii Galaxy Zoo used.

Neighbours: the mock's stamp neighbours lie inside its stamp field (``field_arcsec``);
the rest of the frame is filled from the same number counts and generator
(:meth:`galmap.mock.render.GalaxyModel.fill_frame`, seeded per galaxy), so the frame
shows the field sky everywhere.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from galmap.core.colour import GZ_DECALS_SIZE_PX, gz_decals_pixscale, gz_decals_rgb, to_uint8
from galmap.core.resample import resample_matrix
from galmap.core.surveys import Survey
from galmap.mock.neighbours import NeighbourCounts
from galmap.mock.population import seed_for
from galmap.mock.render import GalaxyModel, draw, observe
from galmap.mock.systematics import galaxy_psf

#: Side (native pixels) of the noiseless r-band image whose curve of growth gives r50 and r90.
RADII_STAMP_PX = 151
_STREAM = zlib.crc32(b"realism") & 0x7FFFFFFF


def light_radii(image: np.ndarray, pixscale_arcsec: float) -> tuple[float, float]:
    """Circular radii (arcsec) holding 50% and 90% of a noiseless image's flux, about its centre."""
    n = image.shape[-1]
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(x, y).ravel()
    order = np.argsort(r)
    flux = np.maximum(image.ravel()[order], 0.0)
    cum = np.cumsum(flux)
    if cum[-1] <= 0:
        raise ValueError("the noiseless image has no flux")
    cum /= cum[-1]
    r50, r90 = np.interp([0.5, 0.9], cum, r[order])
    return float(r50) * pixscale_arcsec, float(r90) * pixscale_arcsec


def gz_decals_image(
    row: Mapping[str, Any],
    survey: Survey,
    seed: int,
    field_arcsec: float,
    size_px: int = GZ_DECALS_SIZE_PX,
    counts: NeighbourCounts | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """One mock galaxy as a Galaxy Zoo DECaLS image: uint8 (size, size, 3) and its geometry.

    Parameters
    ----------
    row : the galaxy's row of ``truth.parquet``.
    survey : the DECaLS survey (bands g, r, z; PSF, depth and gain of the mock).
    seed : master seed; the noise is drawn from ``(seed, index, realism stream)``.
    field_arcsec : the mock's stamp field (where its neighbours lie).
    size_px : side of the output image (424 as Galaxy Zoo DECaLS).
    counts : the neighbours' number counts (``mock.neighbours``); default: their defaults.

    Returns
    -------
    image, and ``{"r50_arcsec", "r90_arcsec", "pixscale_arcsec", "n_neighbours_frame"}``
    (``n_neighbours_frame``: the unrelated sources in the frame).
    """
    if tuple(survey.bands) != ("g", "r", "z"):
        raise ValueError(f"the Galaxy Zoo DECaLS recipe needs g, r, z; survey {survey.name} has {survey.bands}")
    model = GalaxyModel(row, seed, field_arcsec, counts)
    native = survey.pixscale_arcsec
    clean_r = draw(model, survey, "r", size_px=RADII_STAMP_PX, neighbours=False, companion=False, anomaly=False)
    r50, r90 = light_radii(clean_r, native)
    scale = float(gz_decals_pixscale(r50, r90))
    n_native = int(np.ceil(size_px * scale / native)) + 8  # Lanczos-3 support at the edges
    n_native += (n_native - size_px) % 2  # same parity: the centres coincide
    model.fill_frame(n_native * native)  # the field sky beyond the stamp
    rng = seed_for(seed, int(row["index"]), 3, _STREAM)
    m = resample_matrix(n_native, native, size_px, scale).astype(np.float32)
    planes = []
    for band in survey.bands:
        clean = draw(model, survey, band, psf=galaxy_psf(row, survey, band), size_px=n_native)  # its own PSF
        img, _ = observe(clean, float(row.get(f"sky_{survey.name}_{band}", 0.0)), survey, band, rng)
        planes.append(m @ img @ m.T)
    rgb = gz_decals_rgb(np.stack(planes))
    n_nb = len(model.components.neighbours)
    return to_uint8(rgb), {"r50_arcsec": r50, "r90_arcsec": r90, "pixscale_arcsec": scale, "n_neighbours_frame": n_nb}
