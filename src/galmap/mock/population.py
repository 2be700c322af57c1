"""Drawing the mock galaxy population: every generating parameter, the truth table.

Conventions (all recorded in ``truth.parquet``):

* sizes in arcsec; a Sérsic ``re_arcsec`` is the half-light radius along the
  **semi-major axis** (Galfit convention), ``q`` the axis ratio b/a and
  ``pa_deg`` the position angle of the major axis, counter-clockwise from +x
  (the image's column axis), in degrees;
* fluxes in nanomaggies (``flux_<band>``, total rendered flux of the central
  galaxy, companion excluded), Hα in units of 1e-17 erg/s/cm^2 (``flux_Ha``);
* component flux fractions are nominal r-band fractions (``bulge_frac`` is B/T).

Each galaxy's random realisation (clumps, neighbours, noise) is seeded from
``(seed, index)``, so a galaxy renders identically whatever shard it lands in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import galsim
import numpy as np
import pandas as pd
from scipy.special import gammainccinv, gammaincinv

from galmap.core.ids import mock_id
from galmap.core.surveys import flux_to_mag, mag_to_flux, surveys_from_config
from galmap.mock.anomalies import draw_anomalies
from galmap.mock.neighbours import NeighbourCounts
from galmap.mock.sizes import draw_sizes
from galmap.mock.systematics import draw_psf_truth

TYPES = ("elliptical", "lenticular", "spiral", "irregular")
MERGER_STATES = ("none", "minor-disturbance", "major-disturbance", "merger")
BROAD_BANDS = ("u", "g", "r", "i", "z")

#: Redshift at which the component colours are observed. Each galaxy's own redshift sets only its size
#: (:mod:`galmap.mock.sizes`); its galaxies (r = 14.5-17.8) stand for the SDSS main galaxy sample
#: (r < 17.77) that the Galaxy Zoo DECaLS galaxies (NSA v1_0_1) come from, whose median redshift is 0.10
#: (Strauss et al. 2002, AJ 124, 1810).
COLOUR_REDSHIFT = 0.10

#: Observed-frame colours ``m_band - m_r`` (AB; r is DECam's) of the Coleman, Wu & Weedman (1980) templates
#: (extended by Bolzonella et al. 2000; GalSim's ``share/SEDs/CWW_*_ext.sed``) at :data:`COLOUR_REDSHIFT`,
#: through DECam g, r, z (the reference system, shared by the DECaLS and SDSS renders), SDSS u, i (rendered
#: only by SDSS) and Euclid VIS; computed by ``experiments/mock_colours.py`` (speclite's bandpasses).
#: For comparison: Strateva et al. (2001) separate early from late types at SDSS u - r = 2.22 (observed
#: frame); these templates give SDSS u - r 2.75 (E), 1.94 (Sbc), 1.52 (Scd), 0.98 (Im).
TEMPLATE_COLOURS: dict[str, dict[str, float]] = {
    "E": {"u": 2.841, "g": 0.973, "r": 0.0, "i": -0.330, "z": -0.665, "VIS": -0.230},
    "Sbc": {"u": 2.002, "g": 0.592, "r": 0.0, "i": -0.261, "z": -0.626, "VIS": -0.203},
    "Scd": {"u": 1.569, "g": 0.470, "r": 0.0, "i": -0.180, "z": -0.375, "VIS": -0.124},
    "Im": {"u": 1.012, "g": 0.233, "r": 0.0, "i": -0.166, "z": -0.407, "VIS": -0.145},
}
#: The template of each component, by galaxy type. Old stars: bulges, bars and every component of
#: ellipticals and lenticulars (E and S0 share the red peak; Strateva et al. 2001); spiral disks Sbc, arms
#: Scd, star-forming clumps and irregulars Im. Components a type does not have are absent.
COMPONENT_TEMPLATES: dict[str, dict[str, str]] = {
    "elliptical": {"bulge": "E", "bar": "E", "disk": "E", "arms": "E", "clumps": "E"},
    "lenticular": {"bulge": "E", "bar": "E", "disk": "E", "arms": "E", "clumps": "E"},
    "spiral": {"bulge": "E", "bar": "E", "disk": "Sbc", "arms": "Scd", "clumps": "Im"},
    "irregular": {"bulge": "E", "bar": "E", "disk": "Im", "arms": "Scd", "clumps": "Im"},
}
COMPONENTS = ("bulge", "bar", "disk", "arms", "clumps")
#: Half-light radius of an exponential disk in scale lengths.
EXP_RE_PER_H = 1.678
#: Per-galaxy scatter of each component's g - r (mag), along its template's colour vector. E: the middle of
#: the SDSS red sequence's intrinsic scatter in g - r, 0.03-0.05 mag (e.g. Hogg et al. 2004; the range as
#: commonly quoted). Star-forming templates: twice that (the blue sequence is roughly twice as wide as the
#: red one in u - r, Baldry et al. 2004; an approximate reading). Part of the blue cloud's width comes from
#: the mix of components itself.
COLOUR_SCATTER_GR = {"E": 0.04, "Sbc": 0.08, "Scd": 0.08, "Im": 0.08}
#: The bands with a colour column per component (``<component>_colour_<band>``).
COLOUR_BANDS = ("u", "g", "r", "i", "z", "VIS")
#: Hα per unit r-band flux of each star-forming component (1e-17 erg/s/cm^2 per nanomaggy).
HALPHA_PER_NMGY = {"disk": 1.2, "arms": 4.0, "clumps": 9.0}

#: Euclid VIS is a broad r+i+z filter: the neighbours' and anomalies' VIS flux is the mean of those three
#: (the central galaxy's components have their own VIS colour, :data:`TEMPLATE_COLOURS`).
VIS_BANDS = ("r", "i", "z")

#: Rendered Sérsic profiles are truncated where this fraction of the flux lies
#: beyond (keeps GalSim's FFTs small); ``re``/``n`` describe the untruncated profile,
#: and the truncation moves the half-light radius by < 0.5% for n <= 6.
SERSIC_TRUNC_LOST_FLUX = 0.002


def sersic_trunc_re(n: float) -> float:
    """Truncation radius of a rendered Sérsic, in half-light radii (at least 20).

    Solves ``Q(2n, b_n R^(1/n)) = SERSIC_TRUNC_LOST_FLUX`` for R (the fraction of
    light beyond R), rounded up to an integer so GalSim's cache per (n, trunc/r0) hits.
    """
    x = gammainccinv(2 * n, SERSIC_TRUNC_LOST_FLUX)
    b = gammaincinv(2 * n, 0.5)
    return float(max(20.0, np.ceil((x / b) ** n)))


def seed_for(seed: int, index: int, *stream: int) -> np.random.Generator:
    """A random generator for one galaxy (and optional sub-stream), from the master seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, *stream]))


def sersic_rendered_fraction(n: float) -> float:
    """Fraction of a Sérsic profile's total flux kept by the truncation at :func:`sersic_trunc_re`."""
    if n < 1.0:
        return 1.0
    prof = galsim.Sersic(n=n, half_light_radius=1.0, trunc=sersic_trunc_re(n), flux_untruncated=True)
    return float(prof.flux)


def inclined_axis_ratio(inclination_deg: np.ndarray, q0: float = 0.12) -> np.ndarray:
    """Projected axis ratio of an oblate disk of intrinsic thickness ``q0`` (Hubble 1926)."""
    c = np.cos(np.radians(inclination_deg))
    return np.sqrt(c**2 * (1 - q0**2) + q0**2)


def _choice(rng: np.random.Generator, options: tuple[str, ...], probs: list[float], n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return rng.choice(np.array(options, dtype=object), size=n, p=p / p.sum())


def component_colours(gtype: np.ndarray, variates: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Each component's colours ``m_band - m_r`` (AB) for galaxies of types ``gtype``.

    ``variates``: standard normals, shape (len(COMPONENTS), n). A component's colours are its template's
    (:data:`COMPONENT_TEMPLATES`, :data:`TEMPLATE_COLOURS`) scaled by ``1 + d / (g - r)`` with
    ``d = COLOUR_SCATTER_GR[template] * variate``: its g - r scatters by ``d`` and every other colour in
    proportion, so a redder galaxy is redder in all bands. Returns ``{component: {band: array (n,)}}``.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for k, comp in enumerate(COMPONENTS):
        tpl = np.array([COMPONENT_TEMPLATES[t][comp] for t in gtype])
        gr = np.array([TEMPLATE_COLOURS[t]["g"] for t in tpl])
        sig = np.array([COLOUR_SCATTER_GR[t] for t in tpl])
        scale = 1.0 + sig * variates[k] / gr
        out[comp] = {b: np.array([TEMPLATE_COLOURS[t][b] for t in tpl]) * scale for b in COLOUR_BANDS}
    return out


def draw_population(config: Mapping[str, Any]) -> pd.DataFrame:
    """Draw the mock population described by ``config['mock']``; return the truth table.

    The table has one row per central galaxy and every generating parameter; see
    the module docstring for units. Deterministic for a given ``config['seed']``.
    """
    mock = config["mock"]
    seed = int(config["seed"])
    n = int(mock["n_galaxies"])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE]))
    n_step = float(mock.get("sersic_n_step", 0.1))

    fr = mock.get("type_fractions", {})
    probs = [float(fr.get(t, d)) for t, d in zip(TYPES, (0.22, 0.18, 0.5, 0.1), strict=True)]
    if sum(probs) <= 0:
        raise ValueError("mock.type_fractions must have a positive sum")
    gtype = _choice(rng, TYPES, probs, n)
    is_e, is_s0 = gtype == "elliptical", gtype == "lenticular"
    is_sp, is_irr = gtype == "spiral", gtype == "irregular"
    has_disk = ~is_e

    # --- r magnitude: the sky's galaxy number counts (mock.neighbours.galaxies) within mag_r_range, on a
    # stream of their own; drawn again with the size when the Galaxy Zoo DECaLS selection fails (below)
    lo, hi = (float(v) for v in mock.get("mag_r_range", [14.5, 17.8]))
    rng.uniform(lo, hi, n)  # the former uniform magnitudes' draws: the rest of the stream is unchanged
    counts = NeighbourCounts.from_config(mock.get("neighbours")).galaxies.within(lo, hi)
    mag_r = counts.sample(np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE, 4])), n)

    # --- disk: random orientation (cos i uniform); its size below, with the ellipticals' ---------
    rng.normal(0, 0.12, n)  # the former size scatter's draws: the rest of the stream (every other column) is unchanged
    inclination = np.degrees(np.arccos(rng.uniform(0, 1, n)))
    disk_q = inclined_axis_ratio(inclination)
    disk_pa = rng.uniform(0, 180, n)

    # --- bulge fraction by type; spirals span every bulge-size class ------------
    bt = np.zeros(n)
    bt[is_e] = 1.0
    bt[is_s0] = rng.uniform(0.3, 0.7, is_s0.sum())
    sp_bins = [(0.0, 0.0), (0.03, 0.12), (0.12, 0.3), (0.3, 0.5), (0.5, 0.7)]
    sp_pick = rng.choice(len(sp_bins), size=n, p=[0.2, 0.25, 0.25, 0.18, 0.12])
    sp_bt = np.array([rng.uniform(*sp_bins[k]) for k in sp_pick])
    bt[is_sp] = sp_bt[is_sp]
    bt[is_irr] = 0.0

    # --- bulge / elliptical Sérsic parameters ----------------------------------
    n_e = rng.uniform(1.5, 6.0, n)
    n_b = rng.uniform(0.8, 4.5, n)
    bulge_n = np.where(is_e, n_e, n_b)
    bulge_n = np.round(np.round(bulge_n / n_step) * n_step, 3)
    rng.normal(0, 0.12, n)  # the former size scatter's draws (as above)
    # --- sizes: redshift from the luminosity function, Shen et al. (2003) size-luminosity relations,
    # the Galaxy Zoo DECaLS selection (galmap.mock.sizes); on a random stream of their own
    redshift, re_major, mag_r = draw_sizes(
        mag_r,
        is_e,
        np.where(is_e, bulge_n, 1.0),
        np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE, 3])),
        draw_mag=counts.sample,
    )
    disk_h = re_major / EXP_RE_PER_H
    re_e = re_major
    re_b = np.clip(rng.uniform(0.15, 0.45, n) * EXP_RE_PER_H * disk_h, 0.3, None)
    bulge_re = np.where(is_e, re_e, re_b)
    bulge_q = np.where(is_e, rng.uniform(0.25, 1.0, n), rng.uniform(0.6, 1.0, n))
    # bulges in disks share the disk orientation (flattened with it when inclined)
    bulge_q = np.where(has_disk, np.minimum(bulge_q, np.maximum(disk_q, 0.45)), bulge_q)
    bulge_pa = np.where(is_e, rng.uniform(0, 180, n), disk_pa)
    bulge_boxy = has_disk & (bt > 0.05) & (rng.uniform(0, 1, n) < 0.5)
    bulge_n = np.where(bulge_boxy, np.minimum(bulge_n, 2.0), bulge_n)
    bulge_n = np.where(bt > 0, bulge_n, np.nan)
    bulge_re = np.where(bt > 0, bulge_re, np.nan)
    bulge_q = np.where(bt > 0, bulge_q, np.nan)
    bulge_pa = np.where(bt > 0, bulge_pa, np.nan)

    # --- bars (spirals and lenticulars) -------------------------------------------
    bar_class = np.where(is_sp | is_s0, _choice(rng, ("no", "weak", "strong"), [0.42, 0.26, 0.32], n), "no")
    bar_frac = np.where(
        bar_class == "strong",
        rng.uniform(0.16, 0.28, n),
        np.where(bar_class == "weak", rng.uniform(0.05, 0.10, n), 0.0),
    )
    bar_len = np.where(bar_class != "no", rng.uniform(1.2, 2.2, n) * disk_h, 0.0)
    bar_angle = np.where(bar_class != "no", rng.uniform(0, 180, n), 0.0)

    # --- spiral arms ----------------------------------------------------------------
    arm_count = np.where(is_sp, rng.choice([1, 2, 3, 4, 5, 6], size=n, p=[0.2, 0.32, 0.2, 0.14, 0.09, 0.05]), 0)
    arm_pitch = np.where(is_sp, rng.uniform(7.0, 38.0, n), 0.0)
    arm_frac = np.where(is_sp, rng.uniform(0.2, 0.4, n), 0.0)
    arm_phase = rng.uniform(0, 360, n)

    # --- star-forming clumps --------------------------------------------------------
    n_clumps = np.where(is_irr, rng.integers(10, 26, n), np.where(is_sp, rng.integers(0, 10, n), 0))
    clump_frac = np.where(is_irr, rng.uniform(0.25, 0.45, n), np.where(is_sp, rng.uniform(0.0, 0.06, n), 0.0))
    clump_frac = np.where(n_clumps > 0, clump_frac, 0.0)

    # --- mergers: companion + tidal features ------------------------------------
    mf = float(mock.get("merger_fraction", 0.22))
    merger = _choice(rng, MERGER_STATES, [1 - mf, 0.4 * mf, 0.3 * mf, 0.3 * mf], n)
    ratio_rng = {"minor-disturbance": (0.05, 0.15), "major-disturbance": (0.15, 0.4), "merger": (0.4, 1.0)}
    sep_rng = {"minor-disturbance": (1.2, 2.0), "major-disturbance": (1.4, 2.4), "merger": (0.6, 1.2)}
    tidal_rng = {"minor-disturbance": (0.03, 0.06), "major-disturbance": (0.08, 0.15), "merger": (0.1, 0.2)}
    comp_ratio = np.zeros(n)
    comp_sep = np.zeros(n)
    field = max(s.fov_arcsec for s in surveys_from_config(config).values())  # side of the neighbours' field, arcsec
    tidal = np.zeros(n)
    gal_re = np.where(is_e, bulge_re, EXP_RE_PER_H * disk_h)
    for state in MERGER_STATES[1:]:
        m = merger == state
        comp_ratio[m] = rng.uniform(*ratio_rng[state], m.sum())
        comp_sep[m] = np.clip(rng.uniform(*sep_rng[state], m.sum()) * gal_re[m], 1.2, 5.0)
        tidal[m] = rng.uniform(*tidal_rng[state], m.sum())
    comp_pa = rng.uniform(0, 360, n)
    comp_n = np.round(rng.choice([1.0, 2.5, 4.0], size=n), 1)
    comp_re = np.clip(0.6 * gal_re * np.sqrt(np.maximum(comp_ratio, 0.05)), 0.3, 2.5)
    comp_q = rng.uniform(0.4, 1.0, n)
    has_comp = merger != "none"

    # --- per-galaxy colours: each component's template (by type), scattered along its colour vector ---
    # (as many normal draws as the former per-band jitter: the rest of the stream is unchanged)
    colour_variates = rng.standard_normal((len(COMPONENTS), n, len(BROAD_BANDS)))
    colours = component_colours(gtype, colour_variates[:, :, 0])
    frac = {
        "bulge": bt,
        "bar": np.where(has_disk, (1 - bt) * bar_frac, 0.0),
        "arms": np.where(has_disk, (1 - bt) * arm_frac, 0.0),
        "clumps": np.where(has_disk, (1 - bt) * clump_frac, 0.0),
    }
    frac["disk"] = np.where(has_disk, 1 - bt - frac["bar"] - frac["arms"] - frac["clumps"], 0.0)
    f_r = mag_to_flux(mag_r)
    sersic_kept = {v: sersic_rendered_fraction(v) for v in np.unique(bulge_n[np.isfinite(bulge_n)])}
    kept = np.array([sersic_kept.get(v, 1.0) if np.isfinite(v) else 1.0 for v in bulge_n])

    table: dict[str, Any] = {
        "id": [mock_id(i) for i in range(n)],
        "index": np.arange(n),
        "ra": rng.uniform(150.0, 160.0, n),
        "dec": rng.uniform(0.0, 5.0, n),
        "type": gtype.astype(str),
        "mag_r_nominal": mag_r,
        "redshift": redshift,
        "dx_arcsec": rng.uniform(-0.3, 0.3, n),
        "dy_arcsec": rng.uniform(-0.3, 0.3, n),
        "bulge_frac": bt,
        "bulge_n": bulge_n,
        "bulge_re_arcsec": bulge_re,
        "bulge_q": bulge_q,
        "bulge_pa_deg": bulge_pa,
        "bulge_boxy": bulge_boxy,
        "disk_h_arcsec": np.where(has_disk, disk_h, np.nan),
        "disk_re_arcsec": np.where(has_disk, EXP_RE_PER_H * disk_h, np.nan),
        "inclination_deg": np.where(has_disk, inclination, np.nan),
        "disk_q": np.where(has_disk, disk_q, np.nan),
        "disk_pa_deg": np.where(has_disk, disk_pa, np.nan),
        "bar_class": bar_class.astype(str),
        "bar_frac": frac["bar"],
        "bar_len_arcsec": bar_len,
        "bar_angle_deg": bar_angle,
        "arm_count": arm_count.astype(np.int64),
        "arm_pitch_deg": arm_pitch,
        "arm_frac": frac["arms"],
        "arm_phase_deg": arm_phase,
        "n_clumps": n_clumps.astype(np.int64),
        "clump_frac": frac["clumps"],
        "disk_frac": frac["disk"],
        "merger_state": merger.astype(str),
        "companion_flux_ratio": comp_ratio,
        "companion_sep_arcsec": np.where(has_comp, comp_sep, 0.0),
        "companion_pa_deg": comp_pa,
        "companion_n": comp_n,
        "companion_re_arcsec": comp_re,
        "companion_q": comp_q,
        "tidal_frac": tidal,
        # unrelated sources over the widest stamp's field, from the number counts (galmap.mock.neighbours), on a
        # random stream of their own (changing the counts changes no other column)
        "n_neighbours": np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE, 2]))
        .poisson(NeighbourCounts.from_config(mock.get("neighbours")).expected(field**2), n)
        .astype(np.int64),
        "bulge_flux_kept": kept,
    }
    # total rendered flux per band of the central galaxy (companion excluded)
    for band in COLOUR_BANDS:
        total = np.zeros(n)
        for comp in COMPONENTS:
            offset = colours[comp][band]
            total += f_r * frac[comp] * 10 ** (-0.4 * offset) * (kept if comp == "bulge" else 1.0)
            table[f"{comp}_colour_{band}"] = offset
        table[f"flux_{band}"] = total
    # Hα from the star-forming components only (not the bulge or bar); scatter 0.1 dex
    sf_eff = 10 ** rng.normal(0, 0.1, n) * np.where(is_e | is_s0, 0.0, 1.0)
    table["halpha_efficiency"] = sf_eff
    table["flux_Ha"] = sf_eff * f_r * sum(HALPHA_PER_NMGY[c] * frac[c] for c in HALPHA_PER_NMGY)
    for band in (*BROAD_BANDS, "VIS"):
        table[f"mag_{band}"] = flux_to_mag(table[f"flux_{band}"])
    table["g_minus_r"] = table["mag_g"] - table["mag_r"]
    table["r_minus_z"] = table["mag_r"] - table["mag_z"]
    table["is_single_sersic"] = is_e & ~has_comp
    # light-weighted size proxy (r band): B/T-weighted half-light radii, semi-major axis
    table["re_light_weighted_arcsec"] = np.where(
        is_e, bulge_re, bt * np.nan_to_num(bulge_re) + (1 - bt) * EXP_RE_PER_H * disk_h
    )
    # residual sky level left in each stamp (what background subtraction must remove)
    sky_sigma = float(mock.get("sky_offset_sigma", 0.5))
    surveys = surveys_from_config(config)
    for survey in surveys.values():
        for band, sigma in zip(survey.bands, survey.sky_sigma, strict=True):
            table[f"sky_{survey.name}_{band}"] = rng.normal(0.0, sky_sigma * sigma, n)
    # injected anomalies (own random stream: the galaxies above do not depend on them)
    artefact_survey = mock.get("anomalies", {}).get("artefact_survey", "decals")
    artefact_bands = surveys[artefact_survey].bands if artefact_survey in surveys else ()
    table |= draw_anomalies(n, config, table["re_light_weighted_arcsec"], artefact_bands)
    table["is_single_sersic"] = table["is_single_sersic"] & (table["anomaly"] == "none")
    # each galaxy's own PSF per survey and band (own random stream; mock.systematics.psf)
    table |= draw_psf_truth(n, surveys.values(), (mock.get("systematics") or {}).get("psf") or {}, seed)
    return pd.DataFrame(table)


def true_answers(truth: pd.DataFrame) -> pd.DataFrame:
    """The answer an ideal volunteer would give to each question, from the truth.

    Returns one string column ``true_<question>`` per Galaxy Zoo question (the
    answer name, or ``""`` where the ideal volunteer would not be asked).
    """
    gtype = truth["type"].to_numpy()
    bt = truth["bulge_frac"].to_numpy()
    incl = np.nan_to_num(truth["inclination_deg"].to_numpy())
    edge_on = (gtype != "elliptical") & (incl > 75.0)
    bar = truth["bar_class"].to_numpy()
    featured = (gtype == "spiral") | (gtype == "irregular") | ((gtype == "lenticular") & (edge_on | (bar != "no")))
    q_proj = np.where(gtype == "elliptical", truth["bulge_q"], truth["disk_q"].fillna(1.0))
    q_proj = np.where(gtype == "lenticular", bt * np.nan_to_num(truth["bulge_q"]) + (1 - bt) * q_proj, q_proj)
    rounded = np.where(q_proj > 0.7, "round", np.where(q_proj > 0.42, "in-between", "cigar-shaped"))
    eob = np.where(bt < 0.05, "none", np.where(truth["bulge_boxy"], "boxy", "rounded"))
    arms = truth["arm_count"].to_numpy() > 0
    pitch = truth["arm_pitch_deg"].to_numpy()
    winding = np.where(pitch < 16.0, "tight", np.where(pitch < 26.0, "medium", "loose"))
    count = truth["arm_count"].to_numpy()
    count_ans = np.where(count >= 5, "more-than-4", count.astype(str))
    bsize = np.select([bt < 0.03, bt < 0.12, bt < 0.3, bt < 0.5], ["none", "small", "moderate", "large"], "dominant")
    face = featured & ~edge_on
    spiral_face = face & arms
    blank = ""
    return pd.DataFrame(
        {
            "true_smooth-or-featured": np.where(featured, "featured-or-disk", "smooth"),
            "true_how-rounded": np.where(~featured, rounded, blank),
            "true_disk-edge-on": np.where(featured, np.where(edge_on, "yes", "no"), blank),
            "true_edge-on-bulge": np.where(featured & edge_on, eob, blank),
            "true_bar": np.where(face, bar, blank),
            "true_has-spiral-arms": np.where(face, np.where(arms, "yes", "no"), blank),
            "true_spiral-winding": np.where(spiral_face, winding, blank),
            "true_spiral-arm-count": np.where(spiral_face, count_ans, blank),
            "true_bulge-size": np.where(face, bsize, blank),
            "true_merging": truth["merger_state"].to_numpy(),
        },
        index=truth.index,
    )
