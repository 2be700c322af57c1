"""Survey descriptions: bands, pixel scale, PSF, depth and noise.

Units: pixel scales in arcsec/pixel, PSF FWHM in arcsec, depths as 5-sigma
AB magnitudes of a point source, or of a round exponential galaxy of half-light
radius ``depth_hlr_arcsec`` where a survey states its depth that way (DECaLS:
the DESI requirement g=24.0, r=23.4, z=22.5 is for a 0.45'' ELG); for Ha,
magnitudes of a flux in units of 1e-17 erg/s/cm^2 with the same 22.5 zero point;
fluxes in nanomaggies (``m = 22.5 - 2.5 log10(f)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import galsim
import numpy as np

#: GalSim accuracy settings shared by every profile: large FFTs allowed for big, cuspy
#: galaxies; a folding threshold of 1% (GalSim's default is 0.5%) makes Euclid stamps
#: 1.5x faster and changes no pixel by more than 0.12 sigma of the Euclid noise
#: (measured on 60 mock galaxies); fluxes stay within 1% (tests/mock/test_mock.py).
GSPARAMS = galsim.GSParams(maximum_fft_size=16384, folding_threshold=1e-2)

#: Flux unit of each band's images.
BAND_UNITS = {b: "nanomaggy" for b in ("u", "g", "r", "i", "z", "VIS")} | {"Ha": "1e-17 erg/s/cm^2"}


def mag_to_flux(mag: np.ndarray | float) -> np.ndarray | float:
    """AB magnitude -> flux in nanomaggies."""
    return 10.0 ** ((22.5 - np.asarray(mag)) / 2.5)


def flux_to_mag(flux: np.ndarray | float) -> np.ndarray | float:
    """Flux in nanomaggies -> AB magnitude (NaN for non-positive flux)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(flux), np.nan)


def moffat_psf(fwhm_arcsec: float, beta: float) -> galsim.GSObject:
    """The survey PSF model: a unit-flux Moffat, wings truncated at 6 FWHM (arcsec)."""
    return galsim.Moffat(beta=beta, fwhm=fwhm_arcsec, trunc=6.0 * fwhm_arcsec, gsparams=GSPARAMS)


#: Moffat β of a survey's PSF when its config (``surveys.<name>.psf_beta``) or shard attributes name none.
DEFAULT_PSF_BETA = 3.5


def nominal_psf_beta(attrs: Mapping[str, Any]) -> float:
    """The Moffat β of a survey's nominal PSF from shard attributes (``psf_beta``, else :data:`DEFAULT_PSF_BETA`)."""
    return float(attrs.get("psf_beta", DEFAULT_PSF_BETA))


def moffat_images(
    fwhm_arcsec: np.ndarray, beta: float, pixscale_arcsec: float, size_px: int, pixel: bool = True
) -> np.ndarray:
    """Images of :func:`moffat_psf` for an array of FWHMs (arcsec): shape ``fwhm.shape + (size, size)``, float32.

    Each image is centred on the central pixel of an odd ``size_px`` (rounded up to odd) grid of
    ``pixscale_arcsec`` pixels and sums to 1. ``pixel=True``: the effective (pixel-integrated) PSF,
    the kernel for models sampled at pixel centres; ``pixel=False``: the PSF profile sampled at
    pixel centres, the kernel for models already integrated over the pixels (the Sérsic fitter's).
    """
    fwhm = np.asarray(fwhm_arcsec, dtype=float)
    size_px = int(size_px) | 1
    method = "auto" if pixel else "no_pixel"
    out = np.empty(fwhm.shape + (size_px, size_px), np.float32)
    for k, f in np.ndenumerate(fwhm):
        img = moffat_psf(float(f), beta).drawImage(nx=size_px, ny=size_px, scale=pixscale_arcsec, method=method).array
        out[k] = img / img.sum()
    return out


def galaxy_psfs(shard: Any, idx: np.ndarray, size_px: int) -> np.ndarray | None:
    """The PSF profiles (len(idx), bands, P, P) galaxies ``idx`` of ``shard`` are fitted with, or ``None`` (nominal).

    ``shard``: a :class:`galmap.core.io.Shard` (``extra``, ``attrs``). One helper for every stage that fits
    the preprocessed stamps (the structure stage's Sérsic fits, the super-resolution stage's DECaLS fit).

    A per-galaxy ``psf_profile`` (N, bands, P, P) as it is; else ``psf_fwhm`` (N, bands; arcsec,
    the catalogue's PSF size attached by preprocessing) as Moffats of the survey's nominal β
    (:func:`galmap.core.surveys.moffat_images`, sampled at pixel centres: the fitter's models
    are pixel-integrated); else ``None``.
    """
    profile = shard.extra.get("psf_profile")
    if profile is not None and np.ndim(profile) == 4:
        return np.asarray(profile)[idx]
    fwhm = shard.extra.get("psf_fwhm")
    if fwhm is None:
        return None
    beta = nominal_psf_beta(shard.attrs)
    return moffat_images(np.asarray(fwhm)[idx], beta, float(shard.attrs["pixscale_arcsec"]), size_px, pixel=False)


@dataclass(frozen=True)
class Survey:
    """One survey's imaging properties (one pixel grid for all its bands)."""

    name: str
    bands: tuple[str, ...]
    pixscale_arcsec: float
    stamp_px: int
    psf_fwhm_arcsec: tuple[float, ...]
    psf_beta: float
    depth_mag: tuple[float, ...]
    gain_e_per_nmgy: float
    #: the detector's own pixel scale (arcsec) when the survey delivers coadds resampled to ``pixscale_arcsec``
    #: (the Legacy Surveys' 0.262'' bricks from BASS's 0.454'' pixels); ``None``: images on the native grid
    native_pixscale_arcsec: float | None = None
    #: half-light radius (arcsec) of the round exponential galaxy the depths refer to; 0: point-source depths
    depth_hlr_arcsec: float = 0.0

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any], coadd: bool = True) -> Survey:
        """The survey ``name`` of the ``surveys`` config.

        A survey with ``native_pixscale_arcsec`` delivers coadds on ``pixscale_arcsec``
        (``coadd=True``), or, with ``coadd=False``, its native-pixel images: the same field
        on ``round(stamp_px * pixscale_arcsec / native_pixscale_arcsec)`` native pixels.
        """
        bands = tuple(cfg["bands"])
        for key in ("psf_fwhm_arcsec", "depth_mag"):
            missing = [b for b in bands if b not in cfg[key]]
            if missing:
                raise ValueError(f"surveys.{name}.{key} has no entry for band(s) {', '.join(missing)}")
        pixscale, stamp = float(cfg["pixscale_arcsec"]), int(cfg["stamp_px"])
        native = cfg.get("native_pixscale_arcsec")
        if native is not None and not coadd:
            pixscale, stamp, native = float(native), int(round(stamp * pixscale / float(native))), None
        return cls(
            name=name,
            bands=bands,
            pixscale_arcsec=pixscale,
            stamp_px=stamp,
            psf_fwhm_arcsec=tuple(float(cfg["psf_fwhm_arcsec"][b]) for b in bands),
            psf_beta=float(cfg.get("psf_beta", DEFAULT_PSF_BETA)),
            depth_mag=tuple(float(cfg["depth_mag"][b]) for b in bands),
            gain_e_per_nmgy=float(cfg.get("gain_e_per_nmgy", 1000.0)),
            native_pixscale_arcsec=None if native is None else float(native),
            depth_hlr_arcsec=float(cfg.get("depth_hlr_arcsec") or 0.0),
        )

    @property
    def is_coadd(self) -> bool:
        """Whether the images are resampled from native pixels of another scale (:meth:`native`)."""
        return self.native_pixscale_arcsec is not None and not np.isclose(
            self.native_pixscale_arcsec, self.pixscale_arcsec
        )

    def native(self) -> Survey:
        """The survey on its native pixels, covering this stamp's field plus a 3-pixel Lanczos-3 margin per side.

        For a survey that is not a coadd, the survey itself.
        """
        if not self.is_coadd:
            return self
        n = int(np.ceil(self.fov_arcsec / self.native_pixscale_arcsec)) + 6
        scale = float(self.native_pixscale_arcsec)
        return replace(self, pixscale_arcsec=scale, stamp_px=n, native_pixscale_arcsec=None)

    @cached_property
    def coadd_variance_factor(self) -> float:
        """Mean over the coadd pixels of the variance a white-noise native image keeps after resampling.

        Lanczos-3 interpolation (:func:`galmap.core.resample.resample_matrix`) averages
        neighbouring native pixels: a coadd pixel's variance is ``sum_ij w_i^2 w_j^2`` times
        the native one (in surface brightness); 1 for a survey that is not a coadd.
        """
        if not self.is_coadd:
            return 1.0
        from galmap.core.resample import resample_matrix

        nat = self.native()
        w2 = (resample_matrix(nat.stamp_px, nat.pixscale_arcsec, self.stamp_px, self.pixscale_arcsec) ** 2).sum(1)
        return float(np.mean(np.outer(w2, w2)))

    @property
    def fov_arcsec(self) -> float:
        """Side of a stamp in arcsec."""
        return self.stamp_px * self.pixscale_arcsec

    def psf(self, band: str) -> galsim.GSObject:
        """The PSF profile of ``band`` (a Moffat of the configured FWHM and beta), unit flux."""
        fwhm = self.psf_fwhm_arcsec[self.bands.index(band)]
        return moffat_psf(fwhm, self.psf_beta)

    def psf_image(self, band: str, size_px: int) -> np.ndarray:
        """The pixel-integrated PSF (the effective PSF) on the survey grid, summing to 1.

        ``size_px`` should be odd; the PSF is centred on the central pixel.
        """
        img = self.psf(band).drawImage(nx=size_px, ny=size_px, scale=self.pixscale_arcsec).array
        return (img / img.sum()).astype(np.float32)

    @cached_property
    def sky_sigma(self) -> tuple[float, ...]:
        """Per-pixel sky noise sigma per band, in the band's flux unit.

        From the 5-sigma depth and the noise-equivalent area of the source the depth
        refers to, on the survey's pixels: ``sigma_pix = F_5sigma / 5 / sqrt(NEA)``,
        ``NEA = 1 / sum(p_i^2)`` with ``p`` the pixelated PSF (point-source depths) or the
        pixelated round exponential of half-light radius ``depth_hlr_arcsec`` seen
        through the PSF (galaxy depths: a larger NEA, so less noise per pixel for the
        same depth); for a coadd, that of the native pixels carried through the
        resampling (the mean per-pixel sigma; neighbouring coadd pixels are correlated).
        """
        if self.is_coadd:
            # the native pixels' noise, per coadd pixel (flux scales with the pixel area), reduced by resampling
            area = (self.pixscale_arcsec / self.native_pixscale_arcsec) ** 2
            return tuple(float(s * area * np.sqrt(self.coadd_variance_factor)) for s in self.native().sky_sigma)
        out = []
        for band, depth in zip(self.bands, self.depth_mag, strict=True):
            fwhm = self.psf_fwhm_arcsec[self.bands.index(band)]
            size = int(np.ceil((12 * fwhm + 10 * self.depth_hlr_arcsec) / self.pixscale_arcsec)) | 1
            p = self.depth_source_image(band, max(size, 15))
            nea = 1.0 / np.sum(p**2)
            out.append(float(mag_to_flux(depth) / 5.0 / np.sqrt(nea)))
        return tuple(out)

    def depth_source_image(self, band: str, size_px: int) -> np.ndarray:
        """The source the depth of ``band`` refers to, pixelated and summing to 1: the PSF, or
        the round exponential of half-light radius ``depth_hlr_arcsec`` convolved with it."""
        if self.depth_hlr_arcsec <= 0:
            return self.psf_image(band, size_px).astype(float)
        gal = galsim.Exponential(half_light_radius=self.depth_hlr_arcsec, gsparams=GSPARAMS)
        img = galsim.Convolve(gal, self.psf(band)).drawImage(nx=size_px, ny=size_px, scale=self.pixscale_arcsec).array
        return img / img.sum()

    def attrs(self) -> dict[str, Any]:
        """HDF5 attributes describing this survey (DESIGN.md image-store format)."""
        return {
            "survey": self.name,
            "bands": list(self.bands),
            "pixscale_arcsec": self.pixscale_arcsec,
            "psf_fwhm_arcsec": list(self.psf_fwhm_arcsec),
            "units": [BAND_UNITS[b] for b in self.bands],
            "sky_sigma": list(self.sky_sigma),
        } | ({"native_pixscale_arcsec": self.native_pixscale_arcsec, "resampling": "lanczos3"} if self.is_coadd else {})


def surveys_from_config(config: Mapping[str, Any]) -> dict[str, Survey]:
    """All surveys of the config, by name, in config order.

    Surveys with ``native_pixscale_arcsec`` are coadds unless ``mock.systematics.coadd`` is false.
    """
    coadd = bool(((config.get("mock") or {}).get("systematics") or {}).get("coadd", True))
    return {name: Survey.from_config(name, cfg, coadd) for name, cfg in config["surveys"].items()}
