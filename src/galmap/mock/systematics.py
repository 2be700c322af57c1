"""Survey systematics of the mock: what real surveys do to images and the pipeline does not know.

Each has its switch and its values in ``mock.systematics`` (config/config.yaml; the
sources of the values are in docs/mock.md):

* **PSF variation** (``psf``): each galaxy is observed, in each band of a listed survey,
  through its own PSF: a Moffat whose FWHM scatters log-normally around the survey's
  nominal one, with its own β (on a grid of ``beta_step``) and ellipticity (shear
  ``g1, g2``). The truth table keeps them (``psf_fwhm_<survey>_<band>`` in arcsec,
  ``psf_beta_<survey>``, ``psf_g1_<survey>``, ``psf_g2_<survey>``); the images'
  attributes keep only the survey's nominal PSF. What a survey publishes about it, the
  mock's catalogue does (:func:`catalogue_psfsize`): each galaxy's PSF FWHM per band with a
  measurement error (``psfsize_<survey>_<band>`` in ``catalog/catalog.parquet``, as the Legacy
  Surveys' Tractor catalogues give ``psfsize_g/r/z``), from which preprocessing builds each
  galaxy's PSF (``preprocess.psf``), not knowing its β or shear.
* **Filters** (``filters``): the north (BASS/MzLS) bandpasses differ from DECam's: a
  galaxy (each component with its own colour) is ``zero_point + slope * colour`` mag
  fainter in the north band than in DECam's (:class:`FilterShift`).
* **Coadds** (``coadd``): a survey with ``native_pixscale_arcsec`` is rendered and
  observed on its native pixels and resampled (Lanczos-3) to its coadd grid
  (:func:`galmap.core.surveys.surveys_from_config`, :func:`galmap.mock.render.render_shard`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import galsim
import numpy as np
import pandas as pd

from galmap.core.surveys import Survey, moffat_psf

#: Random stream of the PSF draws (independent of every other draw of the population).
PSF_STREAM = 0x9F5
#: Random stream of the catalogue's PSF-size measurement errors.
PSFSIZE_STREAM = 0x9F6


def draw_psf_truth(n: int, surveys: Iterable[Survey], psf_cfg: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Each galaxy's PSF in every band of the surveys listed in ``psf_cfg["surveys"]`` (truth columns).

    FWHM: the survey's nominal FWHM (arcsec) times ``exp(N(0, fwhm_scatter))``, independent
    per band (a band's coadd comes from its own exposures); Moffat β uniform in
    ``beta_range`` on a grid of ``beta_step``, and the shear ``g1, g2`` each ``N(0,
    ellipticity_rms)``, one per survey and galaxy. Empty when ``psf_cfg["enabled"]`` is false.
    """
    if not psf_cfg.get("enabled", False):
        return {}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), PSF_STREAM]))
    listed = set(psf_cfg.get("surveys", []))
    lo, hi = (float(v) for v in psf_cfg["beta_range"])
    step = float(psf_cfg["beta_step"])
    out: dict[str, np.ndarray] = {}
    for s in surveys:
        if s.name not in listed:
            continue
        for band, fwhm in zip(s.bands, s.psf_fwhm_arcsec, strict=True):
            out[f"psf_fwhm_{s.name}_{band}"] = fwhm * np.exp(rng.normal(0.0, float(psf_cfg["fwhm_scatter"]), n))
        out[f"psf_beta_{s.name}"] = np.round(rng.uniform(lo, hi, n) / step) * step
        for comp in ("g1", "g2"):
            out[f"psf_{comp}_{s.name}"] = rng.normal(0.0, float(psf_cfg["ellipticity_rms"]), n)
    return out


def catalogue_psfsize(
    truth: pd.DataFrame, surveys: Iterable[Survey], psf_cfg: Mapping[str, Any], seed: int
) -> pd.DataFrame:
    """The catalogue's per-object PSF size: ``psfsize_<survey>_<band>`` (FWHM, arcsec), one row per ``truth`` row.

    For every band whose PSF varies (a truth column ``psf_fwhm_<survey>_<band>``): the true
    FWHM times ``exp(N(0, psfsize_error))``, the catalogue's measurement error (its own random
    stream). No columns when ``psf_cfg["enabled"]`` or ``psf_cfg["catalogue"]`` is false, or for
    surveys observed through their nominal PSF (the pipeline then uses that one).
    """
    out = pd.DataFrame(index=truth.index)
    if not (psf_cfg.get("enabled", False) and psf_cfg.get("catalogue", False)):
        return out
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), PSFSIZE_STREAM]))
    err = float(psf_cfg["psfsize_error"])
    for s in surveys:
        for band in s.bands:
            key = f"psf_fwhm_{s.name}_{band}"
            if key in truth.columns:
                scatter = np.exp(rng.normal(0.0, err, len(truth)))
                out[f"psfsize_{s.name}_{band}"] = truth[key].to_numpy(float) * scatter
    return out


@functools.lru_cache(maxsize=64)
def _unit_moffat(beta: float) -> galsim.GSObject:
    """A unit-flux Moffat of FWHM 1 arcsec truncated at 6 FWHM (one per β: GalSim's tables are reused)."""
    return moffat_psf(1.0, beta)


def galaxy_psf(row: Mapping[str, Any], survey: Survey, band: str) -> galsim.GSObject:
    """The PSF galaxy ``row`` was observed with in ``survey``'s ``band``: its truth PSF, else the nominal one."""
    key = f"psf_fwhm_{survey.name}_{band}"
    if key not in row:
        return survey.psf(band)
    name = survey.name
    psf = _unit_moffat(round(float(row[f"psf_beta_{name}"]), 6)).dilate(float(row[key]))
    return psf.shear(g1=float(row[f"psf_g1_{name}"]), g2=float(row[f"psf_g2_{name}"]))


@dataclass(frozen=True)
class FilterShift:
    """Magnitude offsets of a survey's bandpasses from the reference (DECam) system.

    ``m_survey = m_DECam + zero_point[band] + slope[band] * (m[c1] - m[c2])`` with
    ``colour[band] = (c1, c2)`` (DECam colours, the first-order inverse of the documented
    north-to-south transformation). Bands not listed are unchanged.
    """

    zero_point: Mapping[str, float]
    slope: Mapping[str, float]
    colour: Mapping[str, tuple[str, str]]

    @classmethod
    def from_config(cls, filters: Mapping[str, Any]) -> FilterShift:
        """From ``mock.systematics.filters``: ``terms`` per band, and the switches ``zero_points``, ``colour_terms``."""
        terms = filters.get("terms", {})
        zp = {b: float(t["zero_point"]) if filters.get("zero_points", True) else 0.0 for b, t in terms.items()}
        slope = {b: float(t["slope"]) if filters.get("colour_terms", True) else 0.0 for b, t in terms.items()}
        colour = {b: (str(t["colour"][0]), str(t["colour"][1])) for b, t in terms.items()}
        return cls(zp, slope, colour)

    def delta_mag(self, band: str, mags: Mapping[str, float]) -> float:
        """The offset (mag) in ``band`` of a source with (relative) magnitudes ``mags`` per band."""
        if band not in self.zero_point:
            return 0.0
        c1, c2 = self.colour[band]
        return self.zero_point[band] + self.slope[band] * (float(mags[c1]) - float(mags[c2]))

    def factor(self, band: str, mags: Mapping[str, float]) -> float:
        """The flux factor ``10^(-0.4 delta_mag)`` in ``band``."""
        return float(10 ** (-0.4 * self.delta_mag(band, mags)))


def filter_shifts(systematics: Mapping[str, Any] | None) -> dict[str, FilterShift]:
    """Survey name -> :class:`FilterShift` from ``mock.systematics`` (none when ``filters.enabled`` is false)."""
    filters = (systematics or {}).get("filters") or {}
    if not filters.get("enabled", False):
        return {}
    shift = FilterShift.from_config(filters)
    return {name: shift for name in filters.get("surveys", [])}
