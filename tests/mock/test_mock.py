"""The mock survey against its own truth: fluxes, sizes, PSFs, noise, determinism, physics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.core.surveys import Survey
from galmap.mock.population import draw_population
from galmap.mock.render import GalaxyModel, draw, render_shard
from galmap.mock.systematics import galaxy_psf
from tests.measure import fwhm, half_light_radius, total_flux


def _pick(truth: pd.DataFrame, **conditions) -> list[dict]:
    rows = truth[truth["anomaly"] == "none"]  # injected anomalies add light of their own
    for key, value in conditions.items():
        rows = rows[rows[key] == value]
    return rows.to_dict("records")


@pytest.fixture(scope="module")
def population(default_config):
    """A larger population (no rendering) for statistics of the truth and the labels."""
    cfg = dict(default_config) | {"mock": dict(default_config["mock"]) | {"n_galaxies": 3000}}
    return draw_population(cfg)


def test_noiseless_total_flux_matches_truth(truth, surveys, test_config):
    """Sum of a noiseless, neighbour-free render equals the truth flux within 1% (every type)."""
    decals = surveys["decals"]
    big = Survey.from_config(
        "big", test_config["surveys"]["decals"] | {"stamp_px": 1024}
    )  # holds a large n = 6 elliptical out to its truncation
    checked = 0
    for gtype in ("elliptical", "lenticular", "spiral", "irregular"):
        for row in _pick(truth, type=gtype)[:1]:
            model = GalaxyModel(row, test_config["seed"], decals.fov_arcsec)
            for band in decals.bands:
                img = draw(model, big, band, companion=False, neighbours=False)
                assert total_flux(img) == pytest.approx(row[f"flux_{band}"], rel=0.01), (row["id"], band)
                checked += 1
    assert checked == 12


def test_euclid_and_halpha_fluxes_match_truth(truth, surveys, test_config):
    euclid = surveys["euclid"]
    big_e = Survey.from_config("big", test_config["surveys"]["euclid"] | {"stamp_px": 1024})
    big_h = Survey.from_config("big", test_config["surveys"]["halpha"] | {"stamp_px": 256})
    for row in _pick(truth, type="spiral")[:2]:
        model = GalaxyModel(row, test_config["seed"], euclid.fov_arcsec)
        vis = draw(model, big_e, "VIS", companion=False, neighbours=False)
        assert total_flux(vis) == pytest.approx(row["flux_VIS"], rel=0.01)
        ha = draw(model, big_h, "Ha", companion=False, neighbours=False)
        assert total_flux(ha) == pytest.approx(row["flux_Ha"], rel=0.01)
        assert row["flux_Ha"] > 0


@pytest.mark.parametrize("n", [1.0, 2.5, 4.0, 6.0])
def test_pure_sersic_half_light_radius(n, truth, test_config):
    """A pure Sérsic renders with the truth's half-light radius (semi-major axis) within 3%."""
    row = dict(_pick(truth, type="elliptical")[0])
    row.update(bulge_n=n, bulge_re_arcsec=1.6, bulge_q=0.7, bulge_pa_deg=35.0, dx_arcsec=0.1, dy_arcsec=-0.2)
    row.update(n_neighbours=0, merger_state="none")
    scale, size = 0.04, 1200
    fine = Survey.from_config("fine", test_config["surveys"]["decals"] | {"stamp_px": size, "pixscale_arcsec": scale})
    model = GalaxyModel(row, 1, fine.fov_arcsec)
    img = draw(model, fine, "r", psf=False)
    centre = ((size - 1) / 2 + row["dy_arcsec"] / scale, (size - 1) / 2 + row["dx_arcsec"] / scale)
    total = sum(model.component_fluxes("r").values()) * model.components.central["bulge"].flux
    re = half_light_radius(img, centre=centre, q=0.7, pa_deg=35.0, pixscale=scale, oversample=1, total=total)
    assert re == pytest.approx(1.6, rel=0.03)


def test_psf_fwhm_as_configured(surveys, default_config):
    from galmap.core.surveys import surveys_from_config

    for survey in [*surveys.values(), *surveys_from_config(default_config).values()]:
        for band, want in zip(survey.bands, survey.psf_fwhm_arcsec, strict=True):
            scale = want / 20
            img = survey.psf(band).drawImage(nx=301, ny=301, scale=scale, method="no_pixel").array
            assert fwhm(img, scale) == pytest.approx(want, rel=0.05), (survey.name, band)
            stamp = survey.psf_image(band, 25)
            assert stamp.sum() == pytest.approx(1.0, abs=1e-5)
            assert np.unravel_index(np.argmax(stamp), stamp.shape) == (12, 12)


def test_flux_consistent_across_surveys(test_config, surveys):
    """The same galaxies have the same total flux in DECaLS, BASS and Euclid, within the noise.

    Isolated galaxies (no neighbours, no companion), small enough to sit well inside
    every stamp; the residual sky level (truth) is removed before summing.
    """
    mock = dict(test_config["mock"]) | {
        "neighbours": {"enabled": False},
        "merger_fraction": 0.0,
        "n_galaxies": 200,
        "anomalies": {"fraction": 0.0},
    }
    pop = draw_population(test_config | {"mock": mock}).nsmallest(6, "re_light_weighted_arcsec")
    assert (pop["re_light_weighted_arcsec"] < 1.6).all()
    names = ("decals", "bass", "euclid")
    # 30-arcsec stamps hold essentially all the light, even of high-n Sérsic wings
    wide = {
        n: Survey.from_config(n, test_config["surveys"][n] | {"stamp_px": int(30 / surveys[n].pixscale_arcsec)})
        for n in names
    }
    shards = render_shard(pop, [wide[n] for n in names], test_config["seed"], progress=False)
    for k, row in enumerate(pop.to_dict("records")):
        measured = {}
        for name, band in (("decals", "r"), ("bass", "r"), ("euclid", "VIS")):
            j = wide[name].bands.index(band)
            img = shards[name].images[k, j].astype(float)
            noise = np.sqrt((1.0 / shards[name].ivar[k, j].astype(float)).sum())
            measured[name] = img.sum() - row[f"sky_{name}_{band}"] * img.size
            assert measured[name] == pytest.approx(row[f"flux_{band}"], rel=0.01, abs=5 * noise), name
        # DECaLS r and BASS r: one band, two grids and PSFs, the same flux
        noise = np.hypot(*(np.sqrt((1.0 / shards[n].ivar[k, 1].astype(float)).sum()) for n in ("decals", "bass")))
        assert measured["decals"] == pytest.approx(measured["bass"], rel=0.01, abs=5 * noise), row["id"]


def test_noise_matches_ivar(rendered, truth, surveys, test_config):
    """Pixel residuals from the noiseless model, scaled by sqrt(ivar), have unit variance."""
    row = truth.iloc[0].to_dict()
    s = surveys["decals"]
    model = GalaxyModel(row, test_config["seed"], max(v.fov_arcsec for v in surveys.values()))
    for j, band in enumerate(s.bands):
        clean = draw(model, s, band, psf=galaxy_psf(row, s, band))  # the galaxy's own PSF (mock.systematics.psf)
        resid = (rendered["decals"].images[0, j] - clean - row[f"sky_decals_{band}"]) * np.sqrt(
            rendered["decals"].ivar[0, j]
        )
        assert np.std(resid) == pytest.approx(1.0, abs=0.08)
        assert abs(np.mean(resid)) < 0.1


def test_rendering_is_deterministic(truth, surveys, test_config):
    subset = truth.iloc[:3]
    a = render_shard(subset, [surveys["decals"], surveys["euclid"]], test_config["seed"], progress=False)
    b = render_shard(subset, [surveys["decals"], surveys["euclid"]], test_config["seed"], progress=False)
    for name in a:
        np.testing.assert_array_equal(a[name].images, b[name].images)
        np.testing.assert_array_equal(a[name].ivar, b[name].ivar)
    c = render_shard(subset, [surveys["decals"]], test_config["seed"] + 1, progress=False)
    assert not np.array_equal(a["decals"].images, c["decals"].images)


def test_galaxy_renders_the_same_in_any_shard(truth, surveys, test_config, rendered):
    """A galaxy's pixels depend on (seed, index) only, not on the rows rendered with it."""
    # the survey with the widest field: neighbours are placed in the widest field rendered together
    name = max(surveys, key=lambda k: surveys[k].fov_arcsec)
    one = render_shard(truth.iloc[[5]], [surveys[name]], test_config["seed"], progress=False)
    np.testing.assert_array_equal(one[name].images[0], rendered[name].images[5])


@pytest.mark.parametrize("logged", [True, False], ids=["with-failure-log", "without-failure-log"])
def test_a_failed_galsim_draw_is_never_silent(truth, surveys, test_config, monkeypatch, caplog, logged):
    """A draw that raises for one galaxy and band: a warning naming the galaxy, the survey, the band and
    the cause, with or without a FailureLog (and its row when there is one); the other galaxies render."""
    import galmap.mock.render as render
    from galmap.core.failures import FailureLog

    subset = truth.iloc[:3]
    bad = subset["id"].iloc[1]
    real = render.draw

    def flaky(model, survey, band, **kw):
        if model.row["id"] == bad and band == "r":
            raise RuntimeError("GalSim ran out of FFT size")
        return real(model, survey, band, **kw)

    monkeypatch.setattr(render, "draw", flaky)
    failures = FailureLog("data") if logged else None
    with caplog.at_level("WARNING", logger="galmap"):
        shard = render_shard(subset, [surveys["decals"]], test_config["seed"], failures, progress=False)["decals"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    assert bad in warned[0] and "decals r" in warned[0] and "GalSim ran out of FFT size" in warned[0]
    if logged:
        rows = failures.frame()
        assert list(rows["id"]) == [bad] and "rendering decals r failed" in rows["reason"].iloc[0]
        assert "GalSim ran out of FFT size" in rows["reason"].iloc[0]
    # the failed band is empty and carries no weight; the galaxy's other bands and the other galaxies are drawn
    assert not shard.images[1, 1].any() and not shard.ivar[1, 1].any()
    assert (shard.ivar[1, [0, 2]] > 0).all() and (shard.ivar[[0, 2]] > 0).all()


def test_population_is_deterministic(test_config):
    a = draw_population(test_config)
    b = draw_population(test_config)
    pd.testing.assert_frame_equal(a, b)
    c = draw_population(test_config | {"seed": test_config["seed"] + 1})
    assert not np.allclose(a["mag_r_nominal"], c["mag_r_nominal"])


def test_population_is_physical(population):
    t = population
    # spirals are disks; arms only in spirals
    assert (t.loc[t["arm_count"] > 0, "type"] == "spiral").all()
    assert t.loc[t["type"] == "spiral", "disk_h_arcsec"].notna().all()
    # colours redden with bulge fraction (lenticulars' disks are old and red too: the spirals show it best)
    assert np.corrcoef(t["bulge_frac"], t["g_minus_r"])[0, 1] > 0.75
    sp = t[t["type"] == "spiral"]
    assert np.corrcoef(sp["bulge_frac"], sp["g_minus_r"])[0, 1] > 0.7
    # Hα traces star formation: none in ellipticals and lenticulars, rises with disk+arms+clumps
    assert (t.loc[t["type"].isin(["elliptical", "lenticular"]), "flux_Ha"] == 0).all()
    sf = t["type"].isin(["spiral", "irregular"])
    assert (t.loc[sf, "flux_Ha"] > 0).all()
    sf_light = (t["disk_frac"] + t["arm_frac"] + t["clump_frac"]) * 10 ** (-0.4 * (t["mag_r_nominal"] - 22.5))
    assert np.corrcoef(np.log(sf_light[sf]), np.log(t.loc[sf, "flux_Ha"]))[0, 1] > 0.8
    # every type and merger state present; single-Sérsic galaxies exist for the fitter
    assert set(t["type"]) == {"elliptical", "lenticular", "spiral", "irregular"}
    assert t["is_single_sersic"].sum() > 300


def test_colours_are_the_documented_observed_frame_colours(population):
    """Colours at z = 0.10 from the CWW templates: the red and blue peaks on either side of the documented
    separator, and the red sequence as narrow as documented."""
    t = population[population["anomaly"] == "none"]
    u_r = t["mag_u"] - t["mag_r"]
    med_ur = u_r.groupby(t["type"]).median()
    # Strateva et al. (2001): early types (E, S0) lie above u - r = 2.22, late types (spirals, irregulars) below
    assert med_ur["elliptical"] > 2.22 + 0.3 and med_ur["lenticular"] > 2.22 + 0.3
    assert med_ur["spiral"] < 2.22 - 0.2 and med_ur["irregular"] < 2.22 - 0.5
    # ellipticals: the E template's g - r at z = 0.10 (0.973; 0.79 at z = 0), scattered by the red
    # sequence's intrinsic 0.03-0.05 mag (robust sigma); observed-frame colours, not rest-frame ones
    e = t.loc[t["type"] == "elliptical", "g_minus_r"]
    assert 0.95 < e.median() < 1.0
    sigma = 0.7413 * (e.quantile(0.75) - e.quantile(0.25))
    assert 0.03 <= sigma <= 0.05
    # the population's median g - r lies between the peaks
    assert 0.6 < t["g_minus_r"].median() < 0.9
    # every component has its VIS colour; VIS is r + i + z: between r and z in magnitude
    vis_r = t["mag_VIS"] - t["mag_r"]
    assert (vis_r < 0).all() and (vis_r > t["mag_z"] - t["mag_r"]).all()


def test_template_colours_follow_from_the_seds_and_bandpasses():
    """``TEMPLATE_COLOURS`` equal what experiments/mock_colours.py computes (needs speclite, not a dependency)."""
    pytest.importorskip("speclite")
    import importlib.util
    from pathlib import Path

    from galmap.mock.population import COLOUR_BANDS, COLOUR_REDSHIFT, TEMPLATE_COLOURS

    path = Path(__file__).parents[2] / "experiments" / "mock_colours.py"
    spec = importlib.util.spec_from_file_location("mock_colours", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = module.template_colours(COLOUR_REDSHIFT)
    for name, cols in TEMPLATE_COLOURS.items():
        for band in COLOUR_BANDS:
            assert cols[band] == pytest.approx(got[name][band], abs=0.002), (name, band)


def test_halpha_has_no_bulge(truth, test_config, surveys):
    row = _pick(truth, type="spiral")[0]
    model = GalaxyModel(row, test_config["seed"], surveys["decals"].fov_arcsec)
    fluxes = model.component_fluxes("Ha")
    assert fluxes["bulge"] == 0 and fluxes["bar"] == 0
    assert fluxes["disk"] > 0 and fluxes["arms"] > 0
