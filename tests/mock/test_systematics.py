"""Survey systematics of the mock: each switchable, each measurable on single galaxies."""

from __future__ import annotations

import copy

import galsim
import numpy as np
import pandas as pd
import pytest
import torch

from galmap.core.io import Shard
from galmap.core.resample import resample_matrix
from galmap.core.surveys import Survey, moffat_psf, surveys_from_config
from galmap.mock.population import draw_population
from galmap.mock.render import GalaxyModel, draw, render_shard
from galmap.mock.systematics import FilterShift, catalogue_psfsize, galaxy_psf
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.measure import fit_sersic_shard
from galmap.structure.sersic import SersicFitter
from tests.measure import fwhm, total_flux


def _config(base: dict, **systematics) -> dict:
    cfg = copy.deepcopy(base)
    for key, value in systematics.items():
        if isinstance(value, dict):
            cfg["mock"]["systematics"][key].update(value)
        else:
            cfg["mock"]["systematics"][key] = value
    return cfg


@pytest.fixture(scope="module")
def big_population(default_config):
    cfg = _config(default_config)
    cfg["mock"]["n_galaxies"] = 3000
    return draw_population(cfg)


def test_psf_truth_has_the_configured_spread(big_population, default_config):
    """FWHM scatter, β grid and range, shear rms as configured; the nominal FWHM is the median."""
    p = default_config["mock"]["systematics"]["psf"]
    t = big_population
    for name, band, nominal in (("decals", "r", 1.32), ("bass", "g", 1.80), ("mzls", "z", 1.55)):
        ratio = np.log(t[f"psf_fwhm_{name}_{band}"] / nominal)
        assert np.std(ratio) == pytest.approx(p["fwhm_scatter"], rel=0.05)
        assert abs(np.median(ratio)) < 0.01
        beta = t[f"psf_beta_{name}"]
        assert beta.min() >= p["beta_range"][0] and beta.max() <= p["beta_range"][1]
        assert np.allclose(beta / p["beta_step"], np.round(beta / p["beta_step"]))
        assert np.std(t[f"psf_g1_{name}"]) == pytest.approx(p["ellipticity_rms"], rel=0.05)
    assert not any(c.startswith("psf_") and "euclid" in c for c in t.columns)  # Euclid's PSF is not varied


def test_psf_switch_leaves_the_rest_of_the_truth_alone(default_config):
    on = draw_population(_config(default_config))
    off = draw_population(_config(default_config, psf={"enabled": False}))
    assert not [c for c in off.columns if c.startswith("psf_")]
    assert [c for c in on.columns if c.startswith("psf_")]
    assert on[list(off.columns)].equals(off)


def test_galaxy_is_observed_through_its_own_psf_and_the_pipeline_gets_the_nominal_one(test_config):
    """A point source renders with its truth FWHM; the preprocessed shard's PSF is the nominal one either way."""
    truth = draw_population(test_config)
    decals = surveys_from_config(test_config)["decals"]
    row = truth.iloc[0].to_dict() | {"psf_fwhm_decals_r": 1.7, "psf_beta_decals": 3.0, "psf_g1_decals": 0.0,
                                     "psf_g2_decals": 0.0}  # fmt: skip
    fine = Survey.from_config("fine", test_config["surveys"]["decals"] | {"pixscale_arcsec": 0.05, "stamp_px": 151})
    img = galaxy_psf(row, decals, "r").drawImage(nx=151, ny=151, scale=0.05, method="no_pixel").array
    assert fwhm(img, 0.05) == pytest.approx(1.7, rel=0.02)
    nominal = galaxy_psf({}, fine, "r").drawImage(nx=151, ny=151, scale=0.05, method="no_pixel").array
    assert fwhm(nominal, 0.05) == pytest.approx(1.32, rel=0.02)
    # the same galaxies with and without their own PSFs: other pixels, the same nominal PSF for the pipeline
    rows = truth.iloc[:2]
    own = render_shard(rows, [decals], test_config["seed"], progress=False)["decals"]
    nom = render_shard(rows.drop(columns=[c for c in rows.columns if c.startswith("psf_")]), [decals],
                       test_config["seed"], progress=False)["decals"]  # fmt: skip
    assert own.attrs["psf_varies"] and not nom.attrs["psf_varies"]
    assert not np.allclose(own.images, nom.images)
    a = preprocess_shard(own, test_config["preprocess"], progress=False)
    b = preprocess_shard(nom, test_config["preprocess"], progress=False)
    np.testing.assert_array_equal(a.extra["psf"], b.extra["psf"])


@pytest.mark.parametrize(("zero_points", "colour_terms"), [(True, True), (True, False), (False, True)])
def test_colour_terms_shift_g_minus_r_by_the_documented_amount(test_config, zero_points, colour_terms):
    """An isolated elliptical (one component): BASS g - r = DECam g - r + the north-south terms."""
    cfg = _config(test_config, filters={"zero_points": zero_points, "colour_terms": colour_terms})
    terms = cfg["mock"]["systematics"]["filters"]["terms"]
    truth = draw_population(cfg)
    row = truth[(truth["type"] == "elliptical") & (truth["anomaly"] == "none")].iloc[0].to_dict()
    shift = FilterShift.from_config(cfg["mock"]["systematics"]["filters"])
    big = Survey.from_config("big", test_config["surveys"]["decals"] | {"stamp_px": 300})
    model = GalaxyModel(row, cfg["seed"], big.fov_arcsec)
    flux = {
        (b, s is not None): total_flux(draw(model, big, b, shift=s, companion=False, neighbours=False))
        for b in ("g", "r") for s in (None, shift)
    }  # fmt: skip
    colour = {b: row[f"bulge_colour_{b}"] for b in ("g", "r", "z")}
    gr, rz = colour["g"] - colour["r"], colour["r"] - colour["z"]
    want_g = zero_points * terms["g"]["zero_point"] + colour_terms * terms["g"]["slope"] * gr
    want_r = zero_points * terms["r"]["zero_point"] + colour_terms * terms["r"]["slope"] * rz
    shifted = -2.5 * np.log10(flux[("g", True)] / flux[("r", True)])
    measured = shifted + 2.5 * np.log10(flux[("g", False)] / flux[("r", False)])
    assert measured == pytest.approx(want_g - want_r, abs=2e-4)
    assert abs(want_g - want_r) > 0.005  # a shift the test can see
    # the pipeline's renderer applies it to BASS (and MzLS), not to DECaLS; off: nothing
    surveys = surveys_from_config(cfg)
    rows = truth.iloc[:2]
    on = render_shard(rows, [surveys["decals"], surveys["bass"]], cfg["seed"], progress=False,
                      systematics=cfg["mock"]["systematics"])  # fmt: skip
    off = render_shard(rows, [surveys["decals"], surveys["bass"]], cfg["seed"], progress=False)
    np.testing.assert_array_equal(on["decals"].images, off["decals"].images)
    assert on["bass"].attrs["filter_shift"] and not off["bass"].attrs["filter_shift"]
    assert not np.array_equal(on["bass"].images, off["bass"].images)


def test_coadd_switch_and_grid(test_config, default_config):
    """BASS: a 0.262'' coadd from 0.454'' pixels by default; the native-pixel model by switch."""
    coadd = surveys_from_config(default_config)["bass"]
    assert coadd.is_coadd and coadd.pixscale_arcsec == 0.262 and coadd.stamp_px == 64
    native = surveys_from_config(_config(default_config, coadd=False))["bass"]
    assert not native.is_coadd and native.pixscale_arcsec == 0.454 and native.stamp_px == 37
    assert native.fov_arcsec == pytest.approx(coadd.fov_arcsec, rel=0.01)
    assert not surveys_from_config(default_config)["decals"].is_coadd


def test_coadd_noise_is_reduced_and_correlated_as_lanczos3_predicts(test_config):
    """Pure sky: the coadd pixels' variance is ivar's, lower than the native pixels', and neighbours correlate."""
    bass = surveys_from_config(test_config)["bass"]
    nat = bass.native()
    truth = draw_population(test_config)
    # a blank stamp: a galaxy without light, no neighbours, no sky offset
    rows = truth.iloc[:40].copy()
    rows["mag_r_nominal"] = 60.0  # no galaxy light
    rows["n_neighbours"] = 0
    rows[[c for c in rows.columns if c.startswith("sky_")]] = 0.0
    rows["anomaly"] = "none"
    shard = render_shard(rows, [bass], test_config["seed"], progress=False)["bass"]
    img, ivar = shard.images[:, 0].astype(float), shard.ivar[:, 0].astype(float)
    core = (slice(None), slice(8, -8), slice(8, -8))
    assert np.std(img[core] * np.sqrt(ivar[core])) == pytest.approx(1.0, abs=0.05)  # ivar is the per-pixel variance
    # the variance per unit area (surface brightness) falls by the documented Lanczos-3 factor (~0.8)
    area = (bass.pixscale_arcsec / nat.pixscale_arcsec) ** 2
    ratio = np.var(img[core] / area) / nat.sky_sigma[0] ** 2
    assert ratio == pytest.approx(bass.coadd_variance_factor, rel=0.08)
    assert 0.7 < bass.coadd_variance_factor < 0.9
    assert np.mean(bass.sky_sigma[0] ** 2 * ivar[core]) == pytest.approx(1.0, rel=0.1)
    # neighbouring coadd pixels share native pixels: their correlation is the kernel overlap
    r = resample_matrix(nat.stamp_px, nat.pixscale_arcsec, bass.stamp_px, bass.pixscale_arcsec)
    mid = bass.stamp_px // 2
    expect = float(np.mean([r[i] @ r[i + 1] / np.sqrt((r[i] @ r[i]) * (r[i + 1] @ r[i + 1]))
                            for i in range(mid - 8, mid + 8)]))  # fmt: skip
    x = img[core]
    measured = np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1]
    assert measured == pytest.approx(expect, abs=0.05)
    assert measured > 0.3
    # native model: white noise
    native = Survey.from_config("bass", test_config["surveys"]["bass"], coadd=False)
    nat_shard = render_shard(rows, [native], test_config["seed"], progress=False)["bass"]
    y = nat_shard.images[:, 0, 4:-4, 4:-4].astype(float)
    assert abs(np.corrcoef(y[:, :, :-1].ravel(), y[:, :, 1:].ravel())[0, 1]) < 0.05


def test_coadd_keeps_the_flux(test_config):
    """A galaxy's total flux in the BASS coadd equals the native image's (resampling conserves flux)."""
    truth = draw_population(test_config)
    rows = truth[(truth["anomaly"] == "none") & (truth["merger_state"] == "none")].iloc[:3]
    rows = rows.assign(n_neighbours=0)  # nothing at the stamps' edges
    cfg = test_config["surveys"]["bass"] | {"stamp_px": 110}
    coadd, native = Survey.from_config("bass", cfg), Survey.from_config("bass", cfg, coadd=False)
    a = render_shard(rows, [coadd], test_config["seed"], progress=False)["bass"]
    b = render_shard(rows, [native], test_config["seed"], progress=False)["bass"]
    for k in range(len(rows)):
        noise = np.sqrt((1 / b.ivar[k, 1].astype(float)).sum())
        sky = rows.iloc[k]["sky_bass_r"]  # per pixel of the grid delivered
        fluxes = [x.images[k, 1].sum(dtype=float) - sky * x.images[k, 1].size for x in (a, b)]
        assert fluxes[0] == pytest.approx(fluxes[1], abs=4 * noise)
        assert fluxes[0] == pytest.approx(rows.iloc[k]["flux_r"], rel=0.05, abs=4 * noise)


def test_sersic_fit_with_too_narrow_psf_overestimates_re(test_config):
    """A GalSim Sérsic seen through a 1.6'' Moffat, fitted with a 1.2'' one: Re too large, n too small."""
    scale, size = 0.262, 64
    gal = galsim.Sersic(n=2.5, half_light_radius=1.2, flux=200.0).shear(q=0.8, beta=30 * galsim.degrees)
    image = galsim.Convolve(gal, moffat_psf(1.6, 3.5)).drawImage(nx=size, ny=size, scale=scale).array
    rng = np.random.default_rng(1)
    sigma = 0.02
    data = (image + rng.normal(0, sigma, image.shape))[None, None].astype(np.float32)
    ivar = np.full(data.shape, 1 / sigma**2, np.float32)
    seg = np.ones((1, size, size), bool)
    fits = {}
    for name, fw in (("right", 1.6), ("narrow", 1.2)):
        psf = moffat_psf(fw, 3.5).drawImage(nx=31, ny=31, scale=scale, method="no_pixel").array
        fitter = SersicFitter((psf / psf.sum())[None], (size, size), fit_sky=False, dtype=torch.float64)
        fits[name] = fitter.fit(data, ivar, seg)
    re_true = 1.2 / np.sqrt(0.8)  # semi-major axis (arcsec)
    re = {k: float(f.re_px[0]) * scale for k, f in fits.items()}
    n = {k: float(f.n[0]) for k, f in fits.items()}
    assert re["right"] == pytest.approx(re_true, rel=0.03)
    assert n["right"] == pytest.approx(2.5, rel=0.08)
    # the PSF's missing width goes into the galaxy: larger and less concentrated
    assert re["narrow"] > 1.03 * re["right"]
    assert n["narrow"] < 0.95 * n["right"]


def test_catalogue_psfsize_scatters_around_the_truth_by_the_documented_error(big_population, default_config):
    """The catalogue's PSF size: one column per varied band, the true FWHM times a log-normal error of the config's
    size."""
    p = default_config["mock"]["systematics"]["psf"]
    surveys = surveys_from_config(default_config).values()
    t = big_population
    ps = catalogue_psfsize(t, surveys, p, default_config["seed"])
    truth_cols = [c for c in t.columns if c.startswith("psf_fwhm_")]
    assert sorted(ps.columns) == sorted(c.replace("psf_fwhm_", "psfsize_") for c in truth_cols)
    assert not any("euclid" in c for c in ps.columns)  # observed through the nominal PSF: nothing to publish
    for name, band in (("decals", "r"), ("bass", "g"), ("mzls", "z")):
        err = np.log(ps[f"psfsize_{name}_{band}"] / t[f"psf_fwhm_{name}_{band}"])
        assert np.std(err) == pytest.approx(p["psfsize_error"], rel=0.06)
        assert abs(np.median(err)) < 0.003
    assert p["psfsize_error"] > 0
    # reproducible from the seed; switched off (or without PSF variation): no columns
    pd.testing.assert_frame_equal(ps, catalogue_psfsize(t, surveys, p, default_config["seed"]))
    assert catalogue_psfsize(t, surveys, p | {"catalogue": False}, 42).empty
    assert catalogue_psfsize(t, surveys, p | {"enabled": False}, 42).empty


def _seen_through(fwhm: float, survey: Survey, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A GalSim Sérsic (n = 2.5, half-light radius 1.2'', q = 0.8) in every band of ``survey`` through a Moffat of
    ``fwhm`` (arcsec, the survey's β), with noise: image and ivar (1, bands, size, size)."""
    gal = galsim.Sersic(n=2.5, half_light_radius=1.2, flux=200.0).shear(q=0.8, beta=30 * galsim.degrees)
    psf = moffat_psf(fwhm, survey.psf_beta)
    image = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=survey.pixscale_arcsec)
    sigma = 0.02
    noise = np.random.default_rng(seed).normal(0, sigma, (len(survey.bands), size, size))
    data = (image.array[None] + noise)[None].astype(np.float32)
    return data, np.full(data.shape, 1 / sigma**2, np.float32)


def test_sersic_fit_uses_each_galaxys_catalogue_psf(test_config):
    """Two galaxies seen through PSFs 30 % wider and 25 % narrower than the nominal one, with the catalogue's PSF sizes:
    preprocessing (``psf: catalogue``) hands the fitter each galaxy's PSF and Re and n come out right; with the nominal
    PSF (``psf: nominal``) they are off in the directions the PSF widths say."""
    decals = surveys_from_config(test_config)["decals"]
    size = 64
    fwhm = {"wide": 1.3 * decals.psf_fwhm_arcsec[1], "narrow": 0.75 * decals.psf_fwhm_arcsec[1]}
    parts = [_seen_through(f, decals, size, seed) for seed, f in enumerate(fwhm.values())]
    shard = Shard(
        images=np.concatenate([p[0] for p in parts]), ivar=np.concatenate([p[1] for p in parts]),
        ids=np.array(list(fwhm)), attrs=decals.attrs() | {"psf_beta": decals.psf_beta},
    )  # fmt: skip
    catalog = pd.DataFrame({"id": list(fwhm)} | {f"psfsize_decals_{b}": list(fwhm.values()) for b in decals.bands})
    pre = test_config["preprocess"]
    own = preprocess_shard(shard, pre | {"psf": "catalogue"}, progress=False, catalog=catalog)
    assert own.attrs["psf_source"] == "catalogue"
    np.testing.assert_allclose(own.extra["psf_fwhm"][:, 1], list(fwhm.values()), rtol=1e-6)
    nominal = preprocess_shard(shard, pre | {"psf": "nominal"}, progress=False, catalog=catalog)
    assert nominal.attrs["psf_source"] == "nominal" and "psf_fwhm" not in nominal.extra
    params = test_config["structure"] | {"device": "cpu"}
    fits = {
        k: fit_sersic_shard(s, params).query("band == 'r'").set_index("id")
        for k, s in (("own", own), ("nominal", nominal))
    }
    re_true = 1.2 / np.sqrt(0.8)  # semi-major axis (arcsec)
    for gid in fwhm:
        assert fits["own"].loc[gid, "re_arcsec"] == pytest.approx(re_true, rel=0.04)
        assert fits["own"].loc[gid, "n"] == pytest.approx(2.5, rel=0.1)
    # the nominal PSF: the wide PSF's extra blur goes into the galaxy (larger, less concentrated); the core of the one
    # seen through the narrow PSF is sharper than the nominal PSF allows: a cuspier profile (n at its bound here)
    assert fits["nominal"].loc["wide", "re_arcsec"] > 1.06 * re_true
    assert fits["nominal"].loc["wide", "n"] < 0.8 * 2.5
    assert fits["nominal"].loc["narrow", "n"] > 1.2 * 2.5
