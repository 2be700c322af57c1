"""Survey noise from the depth as the survey defines it (point source or a small galaxy)."""

from __future__ import annotations

import dataclasses

import galsim
import numpy as np
import pytest

from galmap.core.surveys import GSPARAMS, mag_to_flux, surveys_from_config


def _matched_filter_snr(image: np.ndarray, sigma: float, n: int, rng: np.random.Generator) -> float:
    """S/N of the optimal (profile-weighted) flux of ``image`` measured on ``n`` white-noise realisations."""
    w = image / image.sum()
    noisy = image[None] + rng.normal(0.0, sigma, (n, *image.shape))
    est = (noisy * w).sum(axis=(1, 2)) / (w * w).sum()
    return float(image.sum() / est.std())


@pytest.mark.parametrize("band", ["g", "z"])
def test_depth_is_five_sigma_for_the_stated_source(default_config, band):
    """A source of the stated kind at the depth magnitude is a 5-sigma detection in the survey's noise."""
    decals = surveys_from_config(default_config)["decals"]
    assert decals.depth_hlr_arcsec == pytest.approx(0.45)  # DECaLS states its depth for a 0.45'' ELG
    j = decals.bands.index(band)
    flux = float(mag_to_flux(decals.depth_mag[j]))
    rng = np.random.default_rng(3)
    gal = galsim.Convolve(galsim.Exponential(half_light_radius=0.45, gsparams=GSPARAMS), decals.psf(band))
    img = gal.drawImage(nx=41, ny=41, scale=decals.pixscale_arcsec).array * flux
    assert _matched_filter_snr(img, decals.sky_sigma[j], 4000, rng) == pytest.approx(5.0, rel=0.05)
    # the same depth read as a point-source depth puts more noise in every pixel (the old reading)
    point = dataclasses.replace(decals, depth_hlr_arcsec=0.0)
    assert point.sky_sigma[j] > 1.1 * decals.sky_sigma[j]
    star = decals.psf(band).drawImage(nx=41, ny=41, scale=decals.pixscale_arcsec).array * flux
    assert _matched_filter_snr(star, point.sky_sigma[j], 4000, rng) == pytest.approx(5.0, rel=0.05)
    # at the galaxy-depth noise the point source is detected at more than 5 sigma
    assert _matched_filter_snr(star, decals.sky_sigma[j], 4000, rng) > 5.5


def test_point_source_depth_is_the_default(default_config):
    """Surveys without ``depth_hlr_arcsec`` keep point-source depths (SDSS, Euclid ...)."""
    surveys = surveys_from_config(default_config)
    assert surveys["sdss"].depth_hlr_arcsec == 0.0 and surveys["euclid"].depth_hlr_arcsec == 0.0
