"""Galaxy sizes from a documented size-luminosity relation, at a redshift drawn from the luminosity function.

The mock's galaxies stand for the Galaxy Zoo DECaLS sample: the SDSS main galaxy sample's magnitude
limit (r < 17.77, Strauss et al. 2002) and a Petrosian radius ``petro_theta`` > 3 arcsec (NSA v1_0_1;
Walmsley et al. 2022, MNRAS 509, 3966, section 2). A galaxy's angular size follows from physics, not from
a relation between apparent magnitude and arcsec:

1. **Redshift.** Given its apparent r magnitude, a galaxy's redshift is drawn from
   ``p(z | m) ∝ φ(m - DM(z)) dV/dz``: the r-band Schechter luminosity function of Blanton et al. (2003,
   ApJ 592, 819; ``M* - 5 log h = -20.44``, ``α = -1.05``) in a flat ΛCDM cosmology with
   ``H0 = 70 km/s/Mpc``, ``Ωm = 0.3``. K-corrections (≲ 0.2 mag at z < 0.2) and evolution are neglected.
2. **Physical size.** The r-band half-light radius (kpc) is log-normal around the relations of Shen et al.
   (2003, MNRAS 343, 978, equations 14-16 and Table 1, h = 0.7): early types ``log R = -0.4 a M + b``
   (``a = 0.6``, ``b = -4.63``), late types ``log R = -0.4 α M + (β - α) log(1 + 10^(-0.4 (M - M0))) + γ``
   (``α = 0.21``, ``β = 0.53``, ``γ = -1.31``, ``M0 = -20.52``), with ``σ_lnR = σ2 + (σ1 - σ2) /
   (1 + 10^(-0.8 (M - M0)))`` (``σ1 = 0.48``, ``σ2 = 0.25``). Ellipticals take the early-type relation;
   the disks of lenticulars, spirals and irregulars the late-type one (Shen et al. separate the two by
   Sérsic index / concentration).
3. **Angular size** ``R / D_A(z)``. Shen et al. measure circular-aperture radii; the mock takes the value
   as the half-light radius along the semi-major axis (equal for face-on galaxies; an inclined galaxy's
   circular radius is smaller than its major-axis one, so inclined mock galaxies come out slightly small).
4. **Selection.** A galaxy is kept only if its Petrosian radius (η = 0.2) as SDSS would measure it, the
   Sérsic profile's ``R_P / R_e`` (:func:`petrosian_ratio`) times ``R_e`` added in quadrature to a point
   source's Petrosian radius in 1.4 arcsec seeing (SDSS's median r-band FWHM), exceeds 3 arcsec, and its
   half-light radius fits the mock's stamps (≤ :data:`RE_MAX_ARCSEC`). A galaxy that fails is drawn again
   (its magnitude from the number counts when :func:`draw_sizes` is given them, redshift and size scatter; same
   type): the magnitudes and sizes are those of the selected sample.
"""

from __future__ import annotations

from collections.abc import Callable
from math import lgamma

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammainc, gammaincinv

#: Flat ΛCDM: Hubble constant (km/s/Mpc) and matter density.
H0_KM_S_MPC = 70.0
OMEGA_M = 0.3
C_KM_S = 299792.458
ARCSEC_PER_RAD = 206264.806

#: Blanton et al. (2003) r-band (^0.1 r) Schechter luminosity function, converted to h = 0.7.
LF_M_STAR = -20.44 + 5 * np.log10(H0_KM_S_MPC / 100.0)
LF_ALPHA = -1.05

#: Shen et al. (2003) Table 1, r band, h = 0.7.
SHEN_EARLY = {"a": 0.6, "b": -4.63}
SHEN_LATE = {"alpha": 0.21, "beta": 0.53, "gamma": -1.31, "M0": -20.52}
SHEN_SIGMA = {"sigma1": 0.48, "sigma2": 0.25, "M0": -20.52}

#: Galaxy Zoo DECaLS selection: NSA Petrosian radius (arcsec, r band) above this.
PETRO_THETA_MIN_ARCSEC = 3.0
#: Petrosian radius (η = 0.2) of a point source in a Gaussian PSF of SDSS's median r-band FWHM, 1.4 arcsec.
PSF_PETRO_ARCSEC = 1.38
#: Largest semi-major half-light radius the mock's stamps hold (DECaLS stamps are 16.8 arcsec across).
RE_MAX_ARCSEC = 5.0
#: Redshift grid of the draws.
Z_GRID = np.linspace(0.002, 0.4, 800)
MAX_REDRAWS = 500


def _e_of_z(z: np.ndarray) -> np.ndarray:
    return np.sqrt(OMEGA_M * (1 + z) ** 3 + (1 - OMEGA_M))


def comoving_distance_mpc(z: np.ndarray) -> np.ndarray:
    """Line-of-sight comoving distance (Mpc) at redshifts ``z`` (≤ 1), flat ΛCDM, trapezoid rule."""
    z = np.asarray(z, dtype=float)
    grid = np.linspace(0.0, max(float(np.max(z)), 1e-6), 4001)
    integrand = 1.0 / _e_of_z(grid)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(grid))])
    return C_KM_S / H0_KM_S_MPC * np.interp(z, grid, cumulative)


def distance_modulus(z: np.ndarray) -> np.ndarray:
    """Distance modulus (mag) at redshifts ``z``: 5 log10(D_L / 10 pc)."""
    d_l = (1 + np.asarray(z)) * comoving_distance_mpc(z)
    return 5 * np.log10(d_l * 1e5)


def kpc_per_arcsec(z: np.ndarray) -> np.ndarray:
    """Physical kpc per arcsec at redshifts ``z``: D_A / 206265."""
    d_a_kpc = comoving_distance_mpc(z) * 1e3 / (1 + np.asarray(z))
    return d_a_kpc / ARCSEC_PER_RAD


def redshift_weights(mag_r: np.ndarray) -> np.ndarray:
    """Unnormalised ``p(z | m)`` on :data:`Z_GRID` for each apparent r magnitude: shape (n, len(Z_GRID))."""
    d_c = comoving_distance_mpc(Z_GRID)
    dv_dz = d_c**2 / _e_of_z(Z_GRID)
    lum = 10 ** (-0.4 * (np.asarray(mag_r)[:, None] - distance_modulus(Z_GRID)[None, :] - LF_M_STAR))
    return lum ** (LF_ALPHA + 1) * np.exp(-lum) * dv_dz[None, :]


def draw_redshift(mag_r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Redshifts drawn from ``p(z | m)`` (:func:`redshift_weights`), linear between grid points."""
    cdf = np.cumsum(redshift_weights(mag_r), axis=1)
    cdf /= cdf[:, -1:]
    u = rng.uniform(0, 1, len(cdf))
    k = np.clip((cdf < u[:, None]).sum(axis=1), 1, len(Z_GRID) - 1)  # each row's searchsorted(u)
    lo, hi = cdf[np.arange(len(k)), k - 1], cdf[np.arange(len(k)), k]
    t = np.clip((u - lo) / np.maximum(hi - lo, 1e-300), 0, 1)
    return Z_GRID[k - 1] + t * (Z_GRID[k] - Z_GRID[k - 1])


def median_size_kpc(abs_mag_r: np.ndarray, early: np.ndarray) -> np.ndarray:
    """Shen et al. (2003) median r-band half-light radius (kpc) at absolute magnitude ``abs_mag_r``."""
    m = np.asarray(abs_mag_r, dtype=float)
    log_early = -0.4 * SHEN_EARLY["a"] * m + SHEN_EARLY["b"]
    p = SHEN_LATE
    log_late = (
        -0.4 * p["alpha"] * m + (p["beta"] - p["alpha"]) * np.log10(1 + 10 ** (-0.4 * (m - p["M0"]))) + p["gamma"]
    )
    return 10 ** np.where(early, log_early, log_late)


def sigma_ln_size(abs_mag_r: np.ndarray) -> np.ndarray:
    """Shen et al. (2003) log-normal width σ_lnR of the size distribution at absolute magnitude ``abs_mag_r``."""
    s = SHEN_SIGMA
    return s["sigma2"] + (s["sigma1"] - s["sigma2"]) / (1 + 10 ** (-0.8 * (np.asarray(abs_mag_r) - s["M0"])))


def petrosian_ratio(n: float, eta: float = 0.2) -> float:
    """Petrosian radius over half-light radius, ``R_P / R_e``, of a Sérsic profile of index ``n``.

    ``R_P`` is where the surface brightness is ``eta`` times the mean inside it (SDSS: η = 0.2).
    """
    b = gammaincinv(2 * n, 0.5)

    def excess(x: float) -> float:
        s = b * x ** (1 / n)
        # L(<x) = 2π n b^(-2n) Γ(2n) P(2n, s) and I(x) = e^(-s) (unit central brightness, R_e = 1)
        return np.exp(-s + 2 * n * np.log(b) - lgamma(2 * n)) * x**2 / (2 * n * gammainc(2 * n, s)) - eta

    return float(brentq(excess, 0.05, 50.0))


def petrosian_ratios(n: np.ndarray) -> np.ndarray:
    """:func:`petrosian_ratio` of each index in ``n``, solved once per distinct value."""
    n = np.asarray(n, dtype=float)
    values, inverse = np.unique(n, return_inverse=True)
    return np.array([petrosian_ratio(v) for v in values])[inverse.reshape(n.shape)]


def observed_petro_theta(re_arcsec: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Petrosian radius (arcsec) SDSS would measure: ``R_P/R_e · R_e`` in quadrature with :data:`PSF_PETRO_ARCSEC`."""
    return _observed_petro_theta(re_arcsec, petrosian_ratios(n))


def _observed_petro_theta(re_arcsec: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    return np.hypot(ratio * np.asarray(re_arcsec), PSF_PETRO_ARCSEC)


def draw_sizes(
    mag_r: np.ndarray,
    early: np.ndarray,
    sersic_n: np.ndarray,
    rng: np.random.Generator,
    draw_mag: Callable[[np.random.Generator, int], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Redshift, semi-major half-light radius (arcsec) and r magnitude of each galaxy of the selected sample.

    ``mag_r``: apparent r (AB), the first draw; ``early``: True for the early-type relation; ``sersic_n``: the
    profile's index for the Petrosian selection; ``draw_mag(rng, k)``: ``k`` new magnitudes from the number
    counts. Failing galaxies are drawn again (module docstring, step 4), with a new magnitude when ``draw_mag``
    is given (so the magnitudes are those of the selected sample too: counts times selection), else at their
    magnitude. Raises ``ValueError`` naming the first galaxy that no draw in :data:`MAX_REDRAWS` could select.
    """
    mag_r, early, sersic_n = np.array(mag_r, float), np.asarray(early, bool), np.asarray(sersic_n, float)
    z = np.zeros(len(mag_r))
    re = np.zeros(len(mag_r))
    todo = np.arange(len(mag_r))
    ratio = petrosian_ratios(sersic_n)  # R_P / R_e, solved once: only m, z and the size scatter are drawn again
    for attempt in range(MAX_REDRAWS):
        if draw_mag is not None and attempt > 0:
            mag_r[todo] = draw_mag(rng, len(todo))
        zt = draw_redshift(mag_r[todo], rng)
        abs_mag = mag_r[todo] - distance_modulus(zt)
        scatter = np.exp(sigma_ln_size(abs_mag) * rng.standard_normal(len(todo)))
        size_kpc = median_size_kpc(abs_mag, early[todo]) * scatter
        re_t = size_kpc / kpc_per_arcsec(zt)
        ok = (_observed_petro_theta(re_t, ratio[todo]) > PETRO_THETA_MIN_ARCSEC) & (re_t <= RE_MAX_ARCSEC)
        z[todo[ok]], re[todo[ok]] = zt[ok], re_t[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            return z, re, mag_r
    raise ValueError(
        f"galaxy {todo[0]} (r = {mag_r[todo[0]]:.2f}): no redshift and size in {MAX_REDRAWS} draws passes the "
        f"Galaxy Zoo DECaLS selection (petro_theta > {PETRO_THETA_MIN_ARCSEC} arcsec, R_e <= {RE_MAX_ARCSEC} arcsec)"
    )
