"""Rendering mock galaxies with GalSim, the same galaxy in every survey.

A galaxy is a sum of GalSim profiles on the sky, in arcsec:

* bulge: a Sérsic (``bulge_n``, ``bulge_re_arcsec`` along the major axis), or for
  a boxy bulge two crossed, flattened Sérsics that make a box/peanut;
* disk: an exponential of scale length ``disk_h_arcsec`` seen at inclination
  ``inclination_deg`` (axis ratio ``disk_q`` for an intrinsic thickness 0.12);
* bar, logarithmic spiral arms and star-forming clumps, defined face-on in the
  plane of the disk and projected with the disk's inclination and position angle
  (the arms are an :class:`galsim.InterpolatedImage` of an analytic pattern);
* a companion and tidal tails for mergers; unrelated neighbour stars and galaxies.

Each component has its own colour, so the galaxy reddens with its bulge fraction;
Hα comes only from the disk, arms and clumps. Every band is convolved with its
survey's PSF and integrated over the pixels; noise is the sky noise implied by
the survey depth plus the galaxy's Poisson noise, and ``ivar`` is its inverse.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import galsim
import numpy as np
import pandas as pd
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.resample import resample_stamps
from galmap.core.surveys import GSPARAMS, Survey, mag_to_flux
from galmap.mock.anomalies import artefact_image, astrophysical_profile
from galmap.mock.population import (
    BROAD_BANDS,
    HALPHA_PER_NMGY,
    VIS_BANDS,
    seed_for,
    sersic_trunc_re,
)
from galmap.mock.systematics import FilterShift, filter_shifts, galaxy_psf

log = logging.getLogger("galmap")

#: Pixel scale (arcsec) of the face-on spiral-arm pattern before projection.
ARM_PATTERN_SCALE = 0.1


def _sersic(n: float, re_major: float, q: float, pa_deg: float) -> galsim.GSObject:
    """Unit-flux Sérsic with half-light radius ``re_major`` along the major axis (arcsec)."""
    kw: dict[str, Any] = {}
    if n >= 1.0:
        kw = {"trunc": sersic_trunc_re(n) * re_major * np.sqrt(q), "flux_untruncated": True}
    prof = galsim.Sersic(n=float(n), half_light_radius=re_major * np.sqrt(q), gsparams=GSPARAMS, **kw)
    return prof.shear(q=q, beta=pa_deg * galsim.degrees)


def _project(obj: galsim.GSObject, q: float, pa_deg: float) -> galsim.GSObject:
    """Project a face-on disk-plane profile to the sky (inclination -> axis ratio q), unit flux."""
    c, s = np.cos(np.radians(pa_deg)), np.sin(np.radians(pa_deg))
    return obj.transform(c, -q * s, s, q * c).withFlux(1.0)


def arm_pattern(h: float, m: int, pitch_deg: float, phase_deg: float, r_in: float, half_size: float) -> np.ndarray:
    """Face-on logarithmic spiral-arm surface brightness on a grid of ``ARM_PATTERN_SCALE``.

    Arms follow ``r = h exp((theta - theta_k) tan(pitch))`` with ``m`` arms, an
    exponential envelope of scale ``h`` (arcsec) and an inner cut-off at ``r_in``.
    Returns an image summing to 1.
    """
    npx = int(np.ceil(half_size / ARM_PATTERN_SCALE))
    y, x = np.mgrid[-npx : npx + 1, -npx : npx + 1] * ARM_PATTERN_SCALE
    r = np.hypot(x, y)
    theta = np.arctan2(y, x)
    psi = m * (theta - np.radians(phase_deg)) - m * np.log(np.maximum(r, 1e-3) / h) / np.tan(np.radians(pitch_deg))
    wave = ((1 + np.cos(psi)) / 2) ** 3
    envelope = np.exp(-r / h) * (1 - np.exp(-((r / max(r_in, 1e-3)) ** 3)))
    img = wave * envelope
    return img / img.sum()


@dataclass
class Components:
    """Unit-flux GalSim profiles of one galaxy's components (sky plane, arcsec)."""

    central: dict[str, galsim.GSObject]
    companion: galsim.GSObject | None
    tidal: galsim.GSObject | None
    neighbours: list[tuple[galsim.GSObject, dict[str, float]]]
    neighbour_xy: list[tuple[float, float]]
    anomaly: tuple[galsim.GSObject, dict[str, float]] | None = None


class GalaxyModel:
    """All the profiles of one mock galaxy, able to give its image in any band.

    Parameters
    ----------
    row : one row of ``truth.parquet``.
    seed : the master seed (clumps and neighbours are drawn from ``(seed, index)``).
    field_arcsec : side of the largest stamp; neighbours are placed inside it.
    """

    def __init__(self, row: Mapping[str, Any], seed: int, field_arcsec: float) -> None:
        self.row = row
        self.index = int(row["index"])
        self.seed = seed
        self.field_arcsec = field_arcsec
        self.components = self._build()

    # ------------------------------------------------------------------ build
    def _build(self) -> Components:
        r = self.row
        rng = seed_for(self.seed, self.index, 1)
        central: dict[str, galsim.GSObject] = {}
        if r["bulge_frac"] > 0:
            n, re, q, pa = r["bulge_n"], r["bulge_re_arcsec"], r["bulge_q"], r["bulge_pa_deg"]
            if r["bulge_boxy"]:
                arm = [_sersic(n, re, 0.45, pa + s * 32.0) for s in (-1, 1)]
                central["bulge"] = galsim.Add(arm).withFlux(1.0)
            else:
                central["bulge"] = _sersic(n, re, q, pa)
        if np.isfinite(r["disk_h_arcsec"]):
            h, qd, pa = r["disk_h_arcsec"], r["disk_q"], r["disk_pa_deg"]
            central["disk"] = galsim.Exponential(scale_radius=h * np.sqrt(qd), gsparams=GSPARAMS).shear(
                q=qd, beta=pa * galsim.degrees
            )
            if r["bar_frac"] > 0:
                bar = galsim.Sersic(
                    n=0.5, half_light_radius=0.35 * r["bar_len_arcsec"] * np.sqrt(0.3), gsparams=GSPARAMS
                ).shear(q=0.3, beta=r["bar_angle_deg"] * galsim.degrees)
                central["bar"] = _project(bar, qd, pa)
            if r["arm_frac"] > 0:
                r_in = max(0.5 * r["bar_len_arcsec"], 0.6 * h)
                half = min(4.5 * h, 0.75 * self.field_arcsec)
                img = arm_pattern(h, int(r["arm_count"]), r["arm_pitch_deg"], r["arm_phase_deg"], r_in, half)
                arms = galsim.InterpolatedImage(
                    galsim.Image(img, scale=ARM_PATTERN_SCALE), flux=1.0, pad_factor=2, gsparams=GSPARAMS
                )
                central["arms"] = _project(arms, qd, pa)
            if r["clump_frac"] > 0 and r["n_clumps"] > 0:
                k = int(r["n_clumps"])
                rad = rng.gamma(2.0, h, k)
                ang = rng.uniform(0, 2 * np.pi, k)
                lopsided = 0.35 * h if r["type"] == "irregular" else 0.0
                off = rng.uniform(0, 2 * np.pi)
                xs = rad * np.cos(ang) + lopsided * np.cos(off)
                ys = rad * np.sin(ang) + lopsided * np.sin(off)
                w = rng.lognormal(0, 0.5, k)
                sig = rng.uniform(0.08, 0.2, k)
                clumps = galsim.Add(
                    [
                        galsim.Gaussian(sigma=s, flux=wi / w.sum(), gsparams=GSPARAMS).shift(x, y)
                        for s, wi, x, y in zip(sig, w, xs, ys, strict=True)
                    ]
                )
                central["clumps"] = _project(clumps, qd, pa)
        companion = tidal = None
        if r["merger_state"] != "none":
            sep, cpa = r["companion_sep_arcsec"], np.radians(r["companion_pa_deg"])
            companion = _sersic(
                r["companion_n"], r["companion_re_arcsec"], r["companion_q"], np.degrees(cpa) + 40.0
            ).shift(sep * np.cos(cpa), sep * np.sin(cpa))
            # a tail on the far side and a bridge towards the companion
            base = r["re_light_weighted_arcsec"]
            t = np.linspace(0, 1, 12)
            tail_r = base * (1.0 + 1.6 * t)
            tail_a = cpa + np.pi + np.radians(110.0) * t
            bridge = np.linspace(0.35, 0.8, 6) * sep
            pts = [
                (rr * np.cos(a), rr * np.sin(a), 0.25 + 0.25 * tt) for rr, a, tt in zip(tail_r, tail_a, t, strict=True)
            ]
            pts += [(b * np.cos(cpa + 0.15), b * np.sin(cpa + 0.15), 0.3) for b in bridge]
            tidal = galsim.Add(
                [galsim.Gaussian(sigma=s, flux=1.0, gsparams=GSPARAMS).shift(x, y) for x, y, s in pts]
            ).withFlux(1.0)
        neighbours = []
        neighbour_xy: list[tuple[float, float]] = []
        nrng = seed_for(self.seed, self.index, 2)
        # neighbours sit in an annulus between the galaxy's outskirts and the field's edge
        r_min = min(2.0 + 1.0 * float(r["re_light_weighted_arcsec"]), 0.3 * self.field_arcsec)
        r_max = 0.5 * self.field_arcsec
        for _ in range(int(r["n_neighbours"])):
            rad = np.sqrt(nrng.uniform(r_min**2, r_max**2))
            ang = nrng.uniform(0, 2 * np.pi)
            x, y = rad * np.cos(ang), rad * np.sin(ang)
            if nrng.uniform() < 0.5:
                prof: galsim.GSObject = galsim.Gaussian(sigma=0.02, gsparams=GSPARAMS)
                colour = nrng.uniform(0.3, 1.4)
                mag = nrng.uniform(17.0, 22.0)
            else:
                prof = galsim.Exponential(half_light_radius=nrng.uniform(0.3, 0.9), gsparams=GSPARAMS).shear(
                    q=nrng.uniform(0.4, 1.0), beta=nrng.uniform(0, 180) * galsim.degrees
                )
                colour = nrng.uniform(0.4, 1.0)
                mag = nrng.uniform(18.5, 22.5)
            f_r = float(mag_to_flux(mag))
            # a simple colour sequence: g-r = colour, and so on proportionally
            offsets = {"u": 2.8 * colour, "g": colour, "r": 0.0, "i": -0.45 * colour, "z": -0.75 * colour}
            fluxes = {b: f_r * 10 ** (-0.4 * offsets[b]) for b in BROAD_BANDS}
            fluxes["VIS"] = float(np.mean([fluxes[b] for b in VIS_BANDS]))
            fluxes["Ha"] = 0.0
            neighbours.append((prof.shift(x, y), fluxes))
            neighbour_xy.append((float(x), float(y)))
        anomaly = astrophysical_profile(r, self.seed)
        return Components(central, companion, tidal, neighbours, neighbour_xy, anomaly)

    # ------------------------------------------------------------------ fluxes
    def component_fluxes(self, band: str, shift: FilterShift | None = None) -> dict[str, float]:
        """Flux of each central component in ``band`` (nanomaggies; Ha in 1e-17 cgs).

        ``shift``: another system's bandpasses (:class:`galmap.mock.systematics.FilterShift`),
        applied to each component with its own colour; ``None``: the reference (DECam) system.
        """
        r = self.row
        f_r = float(mag_to_flux(r["mag_r_nominal"]))
        frac = {
            "bulge": r["bulge_frac"],
            "disk": r["disk_frac"],
            "bar": r["bar_frac"],
            "arms": r["arm_frac"],
            "clumps": r["clump_frac"],
        }
        if band == "Ha":
            eff = r["halpha_efficiency"]
            return {c: eff * f_r * frac[c] * HALPHA_PER_NMGY.get(c, 0.0) for c in frac}
        bands = VIS_BANDS if band == "VIS" else (band,)
        out = {c: float(np.mean([f_r * frac[c] * 10 ** (-0.4 * r[f"{c}_colour_{b}"]) for b in bands])) for c in frac}
        if shift is not None:
            out = {c: f * shift.factor(band, {b: r[f"{c}_colour_{b}"] for b in BROAD_BANDS}) for c, f in out.items()}
        return out

    def profile(
        self,
        band: str,
        companion: bool = True,
        neighbours: bool = True,
        anomaly: bool = True,
        shift: FilterShift | None = None,
    ) -> galsim.GSObject:
        """The galaxy in ``band`` before the PSF: central components (+ companion, tides,
        an astrophysical anomaly, neighbours), shifted by the truth's centre offset,
        fluxes in the band's unit; ``shift``: the bandpasses of another system (the
        central components and the neighbours, each with its own colour)."""
        fluxes = self.component_fluxes(band, shift)
        parts = [obj * fluxes[name] for name, obj in self.components.central.items() if fluxes[name] > 0]
        total_central = sum(fluxes.values())
        c = self.components
        if companion and c.companion is not None and band != "Ha":
            ratio = float(self.row["companion_flux_ratio"])
            parts.append(c.companion * (ratio * total_central))
            parts.append(c.tidal * (float(self.row["tidal_frac"]) * total_central))
        if anomaly and c.anomaly is not None and c.anomaly[1][band] > 0:
            f_r = float(mag_to_flux(self.row["mag_r_nominal"]))
            parts.append(c.anomaly[0] * (c.anomaly[1][band] * f_r))
        if not parts:
            parts = [galsim.Gaussian(sigma=1.0, flux=0.0)]
        gal = galsim.Add(parts).shift(self.row["dx_arcsec"], self.row["dy_arcsec"])
        if neighbours and c.neighbours and band != "Ha":
            gal = galsim.Add([gal] + [p * (f[band] * _neighbour_factor(f, band, shift)) for p, f in c.neighbours])
        return gal


def _neighbour_factor(fluxes: Mapping[str, float], band: str, shift: FilterShift | None) -> float:
    """A neighbour's flux factor in ``band`` of a shifted system (1 for the reference system)."""
    if shift is None or band not in BROAD_BANDS:
        return 1.0
    return shift.factor(band, {b: -2.5 * np.log10(max(fluxes[b], 1e-30)) for b in BROAD_BANDS})


def draw(
    model: GalaxyModel,
    survey: Survey,
    band: str,
    psf: galsim.GSObject | None | bool = None,
    size_px: int | None = None,
    **profile_kw: Any,
) -> np.ndarray:
    """Noiseless image of ``model`` in ``band`` on ``survey``'s pixel grid (flux per pixel).

    ``psf=None`` uses the survey's nominal PSF, a GalSim profile replaces it, and ``psf=False``
    draws the intrinsic profile sampled at the pixel centres (no PSF, no pixel
    integration; for measurements on a fine grid). The stamp centre (pixel
    ``(size-1)/2``) is the nominal galaxy position.
    """
    size = size_px or survey.stamp_px
    if psf is False:
        obj = model.profile(band, **profile_kw)
        return obj.drawImage(nx=size, ny=size, scale=survey.pixscale_arcsec, method="no_pixel").array
    psf = survey.psf(band) if psf is None or psf is True else psf
    obj = galsim.Convolve(model.profile(band, **profile_kw), psf)
    return obj.drawImage(nx=size, ny=size, scale=survey.pixscale_arcsec).array


def _survey_stream(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def observe(
    noiseless: np.ndarray, sky_offset: float, survey: Survey, band: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Add the residual sky level and noise to a noiseless stamp; return (image, ivar).

    Variance per pixel: ``sky_sigma^2 + max(model, 0) / gain`` (sky plus the source's
    Poisson noise, with the survey's gain in electrons per flux unit).
    """
    sigma = survey.sky_sigma[survey.bands.index(band)]
    var = sigma**2 + np.maximum(noiseless, 0) / survey.gain_e_per_nmgy
    image = noiseless + sky_offset + rng.normal(0.0, 1.0, noiseless.shape) * np.sqrt(var)
    return image.astype(np.float32), (1.0 / var).astype(np.float32)


def _failed(failures: FailureLog | None, gid: str, reason: str) -> None:
    """A galaxy (or one of its bands) GalSim could not render: always a warning, a failures row when logged."""
    log.warning("mock: galaxy %s: %s; its stamp is left empty (zero pixels, zero ivar)", gid, reason)
    if failures is not None:
        failures.add(gid, reason)


def render_shard(
    truth: pd.DataFrame,
    surveys: Sequence[Survey],
    seed: int,
    failures: FailureLog | None = None,
    progress: bool = True,
    artefact_survey: str | None = "decals",
    systematics: Mapping[str, Any] | None = None,
) -> dict[str, Shard]:
    """Render every galaxy of ``truth`` in every survey; return one :class:`Shard` per survey.

    Survey systematics (:mod:`galmap.mock.systematics`): a galaxy with truth PSF columns
    (``psf_fwhm_<survey>_<band>``...) is observed through its own PSF, else through the
    survey's nominal one; ``systematics`` (``mock.systematics``) gives the filter shifts
    of the north surveys; a coadd survey (:attr:`Survey.is_coadd`) is observed on its
    native pixels and resampled to its grid with Lanczos-3
    (:func:`galmap.core.resample.resample_stamps`: flux per pixel kept, ``ivar`` the
    per-pixel variance of the resampled noise, whose correlations it does not hold).
    The shards' attributes describe the nominal PSF only.

    Instrumental anomalies (:mod:`galmap.mock.anomalies`) appear only in the images
    of ``artefact_survey``. A galaxy that GalSim cannot render in a survey is
    kept in the shard with zero pixels and zero ``ivar``, and never silently: a warning on
    the ``galmap`` logger names the galaxy and the cause, and a row goes to ``failures``
    when one is given.
    """
    field = max(s.fov_arcsec for s in surveys)
    psfs = {(s.name, b): s.psf(b) for s in surveys for b in s.bands}
    shifts = filter_shifts(systematics)
    observed = {s.name: s.native() for s in surveys}  # the grid each survey is observed on
    out = {
        s.name: (
            np.zeros((len(truth), len(s.bands), o.stamp_px, o.stamp_px), np.float32),
            np.zeros((len(truth), len(s.bands), o.stamp_px, o.stamp_px), np.float32),
        )
        for s, o in ((s, observed[s.name]) for s in surveys)
    }
    rows = truth.to_dict("records")
    for i, row in enumerate(tqdm(rows, desc="rendering", unit="gal", disable=not progress, mininterval=2)):
        try:
            model = GalaxyModel(row, seed, field)
        except Exception as exc:  # noqa: BLE001 - recorded and logged, the batch goes on
            _failed(failures, row["id"], f"building the GalSim model failed: {exc!r}")
            continue
        for survey in surveys:
            s = observed[survey.name]
            # the residual sky level is in the delivered pixels' unit: per native pixel it is smaller by the area ratio
            area = (survey.pixscale_arcsec / s.pixscale_arcsec) ** 2
            rng = seed_for(seed, int(row["index"]), 3, _survey_stream(s.name))
            images, ivar = out[s.name]
            for j, band in enumerate(s.bands):
                psf = galaxy_psf(row, s, band) if f"psf_fwhm_{s.name}_{band}" in row else psfs[(s.name, band)]
                try:
                    clean = draw(model, s, band, psf=psf, shift=shifts.get(s.name))
                except Exception as exc:  # noqa: BLE001 - recorded and logged, the batch goes on
                    _failed(failures, row["id"], f"rendering {s.name} {band} failed: {exc!r}")
                    continue
                if s.name == artefact_survey and (light := artefact_image(row, s, band, after_noise=False)) is not None:
                    clean = clean + light
                sky = float(row.get(f"sky_{s.name}_{band}", 0.0)) / area
                images[i, j], ivar[i, j] = observe(clean, sky, s, band, rng)
                if s.name == artefact_survey and (defect := artefact_image(row, s, band, after_noise=True)) is not None:
                    images[i, j] += defect
    ids = truth["id"].to_numpy(dtype=object)
    shards = {}
    for s in surveys:
        images, ivar = out[s.name]
        if s.is_coadd:
            nat = observed[s.name]
            images, ivar = resample_stamps(images, ivar, nat.pixscale_arcsec, s.stamp_px, s.pixscale_arcsec)
        varies = any(f"psf_fwhm_{s.name}_{b}" in truth.columns for b in s.bands)
        attrs = s.attrs() | {"psf_model": "moffat", "psf_beta": s.psf_beta, "source": "mock"}
        # the nominal PSF: the galaxies were observed through their own (truth.parquet) when it varies
        attrs |= {"psf_varies": bool(varies), "filter_shift": s.name in shifts}
        shards[s.name] = Shard(images=images, ivar=ivar, ids=ids, attrs=attrs)
    return shards
