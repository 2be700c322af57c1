"""Unrelated neighbours: field stars and galaxies drawn from documented number counts.

Each class (``galaxies``, ``stars``) has a differential number count in the r band,
``dN/dm`` in deg^-2 mag^-1 (AB), a continuous piecewise power law
``log10 dN/dm = log10 n_ref + integral of slope(m) dm from r_ref`` with a constant
slope in each segment between ``edges`` (r magnitudes). The values and their
sources are in ``config/config.yaml`` (``mock.neighbours``) and docs/mock.md.

Neighbours are a Poisson process on the sky: a region of area A holds a Poisson
number of mean ``A * (N_galaxies + N_stars)`` (the integrals of the counts over
their edges), placed uniformly over it; each is a star or a galaxy in proportion
to the two integrals, with its magnitude drawn from its class's law. The same
generator (:func:`draw_neighbours`) fills a mock stamp's field (its count is the
truth's ``n_neighbours``) and the rest of a larger frame (the realism stage).

Stars are point sources; galaxies small exponentials. Sizes, shapes and colours are
the mock's neighbour values since before issue 27 (no documented size-magnitude
relation used): half-light radius uniform in ``galaxy_hlr_arcsec``, axis ratio in
``galaxy_q``, g-r in ``galaxy_g_minus_r`` / ``star_g_minus_r``, the other bands on a
simple colour sequence (:func:`neighbour_fluxes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import galsim
import numpy as np

from galmap.core.surveys import GSPARAMS, mag_to_flux

#: Square degrees per square arcsecond.
DEG2_PER_ARCSEC2 = 1.0 / 3600.0**2

#: Defaults (equal to ``mock.neighbours`` of config/config.yaml; sources in docs/mock.md).
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "galaxies": {"edges": [14.0, 20.0, 24.5], "slopes": [0.55, 0.36], "r_ref": 19.5, "n_ref": 1013.0},
    "stars": {"edges": [14.0, 24.5], "slopes": [0.10], "r_ref": 20.0, "n_ref": 200.0},
    "galaxy_hlr_arcsec": [0.3, 0.9],
    "galaxy_q": [0.4, 1.0],
    "galaxy_g_minus_r": [0.4, 1.0],
    "star_g_minus_r": [0.3, 1.4],
}

#: Offsets m_band - m_r of a neighbour per unit g-r (a simple colour sequence).
COLOUR_SEQUENCE = {"u": 2.8, "g": 1.0, "r": 0.0, "i": -0.45, "z": -0.75}


@dataclass(frozen=True)
class PowerLawCounts:
    """A continuous piecewise power-law differential number count ``dN/dm`` (deg^-2 mag^-1).

    ``edges``: segment edges in r (AB, increasing); ``slopes``: d log10(dN/dm) / dm per
    segment; ``n_ref``: dN/dm at magnitude ``r_ref`` (deg^-2 mag^-1).
    """

    edges: tuple[float, ...]
    slopes: tuple[float, ...]
    r_ref: float
    n_ref: float

    def __post_init__(self) -> None:
        e = np.asarray(self.edges, float)
        if len(e) < 2 or np.any(np.diff(e) <= 0):
            raise ValueError(f"number-count edges must increase, got {self.edges}")
        if len(self.slopes) != len(e) - 1:
            raise ValueError(f"{len(self.slopes)} slopes for {len(e) - 1} segments (edges {self.edges})")
        if self.n_ref < 0:
            raise ValueError(f"n_ref must be >= 0, got {self.n_ref}")

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> PowerLawCounts:
        return cls(tuple(map(float, block["edges"])), tuple(map(float, block["slopes"])),
                   float(block["r_ref"]), float(block["n_ref"]))  # fmt: skip

    def log_dn_dm(self, m: np.ndarray | float) -> np.ndarray:
        """log10 of dN/dm (deg^-2 mag^-1) at r magnitudes ``m`` (the end segments extend beyond the edges)."""
        m = np.asarray(m, float)
        e = np.asarray(self.edges, float)
        lo, hi = e[:-1].copy(), e[1:].copy()
        lo[0], hi[-1] = -np.inf, np.inf
        out = np.full(m.shape, np.log10(max(self.n_ref, 1e-300)))
        for a, b, s in zip(lo, hi, self.slopes, strict=True):
            out = out + s * (np.clip(m, a, b) - np.clip(self.r_ref, a, b))
        return out

    def dn_dm(self, m: np.ndarray | float) -> np.ndarray:
        """dN/dm in deg^-2 mag^-1 at r magnitudes ``m`` (zero outside the edges)."""
        m = np.asarray(m, float)
        inside = (m >= self.edges[0]) & (m <= self.edges[-1])
        return np.where(inside, 10 ** self.log_dn_dm(m), 0.0) * (self.n_ref > 0)

    def segment_numbers(self) -> np.ndarray:
        """Expected number per deg^2 in each segment (the integral of dN/dm over it)."""
        e = np.asarray(self.edges, float)
        out = []
        for a, b, s in zip(e[:-1], e[1:], self.slopes, strict=True):
            f_a = 10 ** float(self.log_dn_dm(a))
            out.append(f_a * (b - a) if s == 0 else f_a * (10 ** (s * (b - a)) - 1) / (s * np.log(10)))
        return np.asarray(out) * (self.n_ref > 0)

    def number(self, m_max: float | None = None) -> float:
        """Expected number per deg^2 brighter than ``m_max`` (all of it when None)."""
        if m_max is None:
            return float(self.segment_numbers().sum())
        m = np.linspace(self.edges[0], min(m_max, self.edges[-1]), 2001)
        return float(np.trapezoid(self.dn_dm(m), m)) if m[-1] > m[0] else 0.0

    def within(self, lo: float, hi: float) -> PowerLawCounts:
        """The same law between r magnitudes ``lo`` and ``hi`` only (``lo < hi``, inside the edges)."""
        if not (self.edges[0] <= lo < hi <= self.edges[-1]):
            raise ValueError(f"magnitude range [{lo}, {hi}] is not inside the counts' edges {self.edges}")
        inner = [k for k, e in enumerate(self.edges) if lo < e < hi]
        first = max(0, int(np.searchsorted(self.edges, lo, side="right")) - 1)  # the segment holding lo
        edges = (float(lo), *(self.edges[k] for k in inner), float(hi))
        slopes = self.slopes[first : first + len(edges) - 1]
        return PowerLawCounts(edges, slopes, float(lo), float(10 ** self.log_dn_dm(lo)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` r magnitudes drawn from dN/dm (inverse CDF within each segment)."""
        w = self.segment_numbers()
        if n == 0:
            return np.zeros(0)
        if w.sum() <= 0:
            raise ValueError("cannot draw magnitudes from an empty number count")
        k = rng.choice(len(w), size=n, p=w / w.sum())
        a, b = np.asarray(self.edges)[k], np.asarray(self.edges)[k + 1]
        s = np.asarray(self.slopes)[k]
        u = rng.uniform(0.0, 1.0, n)
        flat = np.abs(s) < 1e-12
        s_safe = np.where(flat, 1.0, s)
        m = a + np.log10(1 + u * (10 ** (s_safe * (b - a)) - 1)) / s_safe
        return np.where(flat, a + u * (b - a), m)


@dataclass(frozen=True)
class NeighbourCounts:
    """The neighbours' number counts and their shapes and colours (``mock.neighbours``)."""

    galaxies: PowerLawCounts
    stars: PowerLawCounts
    galaxy_hlr_arcsec: tuple[float, float]
    galaxy_q: tuple[float, float]
    galaxy_g_minus_r: tuple[float, float]
    star_g_minus_r: tuple[float, float]
    enabled: bool = True

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | None = None) -> NeighbourCounts:
        """From a ``mock.neighbours`` block; missing keys take :data:`DEFAULTS`."""
        p = DEFAULTS | dict(block or {})
        return cls(
            PowerLawCounts.from_config(p["galaxies"]),
            PowerLawCounts.from_config(p["stars"]),
            *(tuple(map(float, p[k])) for k in ("galaxy_hlr_arcsec", "galaxy_q", "galaxy_g_minus_r", "star_g_minus_r")),
            enabled=bool(p["enabled"]),
        )

    def density_deg2(self) -> float:
        """Expected neighbours (stars and galaxies) per deg^2; 0 when disabled."""
        return (self.galaxies.number() + self.stars.number()) * self.enabled

    def expected(self, area_arcsec2: float) -> float:
        """Expected number of neighbours in ``area_arcsec2`` square arcsec."""
        return self.density_deg2() * area_arcsec2 * DEG2_PER_ARCSEC2


@dataclass(frozen=True)
class Neighbour:
    """One unrelated source: position (arcsec from the stamp centre), r magnitude, shape, colour."""

    x: float
    y: float
    mag_r: float
    star: bool
    g_minus_r: float
    hlr_arcsec: float = 0.0
    q: float = 1.0
    pa_deg: float = 0.0


def draw_neighbours(
    rng: np.random.Generator, counts: NeighbourCounts, n: int, half_side: float, inner_half_side: float = 0.0
) -> list[Neighbour]:
    """``n`` neighbours placed uniformly over the square ``|x|, |y| <= half_side`` (arcsec).

    Those that land inside the square ``|x|, |y| < inner_half_side`` are dropped (a frame's
    part that a stamp already holds): with ``n`` Poisson of the whole square's mean, the
    rest is the Poisson process of the region between the two squares.
    """
    if n <= 0 or not counts.enabled:
        return []
    x, y = rng.uniform(-half_side, half_side, (2, n))
    n_star, n_gal = counts.stars.number(), counts.galaxies.number()
    star = rng.uniform(0.0, 1.0, n) < n_star / (n_star + n_gal)
    mag = np.zeros(n)
    mag[star] = counts.stars.sample(rng, int(star.sum()))
    mag[~star] = counts.galaxies.sample(rng, int((~star).sum()))
    colour = np.where(star, rng.uniform(*counts.star_g_minus_r, n), rng.uniform(*counts.galaxy_g_minus_r, n))
    hlr = rng.uniform(*counts.galaxy_hlr_arcsec, n)
    q = rng.uniform(*counts.galaxy_q, n)
    pa = rng.uniform(0.0, 180.0, n)
    keep = (np.abs(x) >= inner_half_side) | (np.abs(y) >= inner_half_side)
    hlr, q = np.where(star, 0.0, hlr), np.where(star, 1.0, q)  # stars: point sources
    values = zip(x, y, mag, colour, hlr, q, pa, strict=True)
    return [
        Neighbour(float(xi), float(yi), float(m), bool(s), float(c), float(h), float(qi), float(p))
        for (xi, yi, m, c, h, qi, p), s, k in zip(values, star, keep, strict=True)
        if k
    ]


def neighbour_fluxes(nb: Neighbour, bands: tuple[str, ...], vis_bands: tuple[str, ...]) -> dict[str, float]:
    """Fluxes (nanomaggies) of a neighbour in ``bands``, ``VIS`` (mean of ``vis_bands``) and ``Ha`` (0)."""
    f_r = float(mag_to_flux(nb.mag_r))
    fluxes = {b: f_r * 10 ** (-0.4 * COLOUR_SEQUENCE[b] * nb.g_minus_r) for b in bands}
    fluxes["VIS"] = float(np.mean([fluxes[b] for b in vis_bands]))
    fluxes["Ha"] = 0.0
    return fluxes


def neighbour_profile(nb: Neighbour) -> galsim.GSObject:
    """Unit-flux GalSim profile of a neighbour at its position: a point source or a small exponential."""
    if nb.star:
        prof: galsim.GSObject = galsim.Gaussian(sigma=0.02, gsparams=GSPARAMS)
    else:
        prof = galsim.Exponential(half_light_radius=nb.hlr_arcsec, gsparams=GSPARAMS).shear(
            q=nb.q, beta=nb.pa_deg * galsim.degrees
        )
    return prof.shift(nb.x, nb.y)
