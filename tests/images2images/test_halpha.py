"""u,g,r,i,z -> Hα: the noise-aware loss, pairing, training reproducibility and the evaluation's measurements."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from galmap.core.failures import FailureLog
from galmap.core.io import Shard, write_shard
from galmap.images2images.halpha import (
    DRAW_METRIC_COLUMNS,
    DRAW_PREDICTION_COLUMNS,
    METRIC_COLUMNS,
    PREDICTION_COLUMNS,
    evaluate,
    evaluate_draws,
    half_light_radius,
    load_pairs,
    radial_profiles,
    train_diffusion,
    train_model,
)


def test_profiles_and_half_light_radius_of_known_maps():
    size = 21
    yy, xx = np.mgrid[:size, :size] - 10
    ring = ((np.hypot(yy, xx) >= 4) & (np.hypot(yy, xx) < 5)).astype(float)
    prof = radial_profiles(ring[None], 10)[0]
    assert prof[4] == pytest.approx(1.0) and prof[:4].sum() == 0 and prof[5:].sum() == 0
    holed = ring.copy()
    holed[10, 6] = 5.0  # a bad pixel on the ring, masked: the annulus mean ignores it
    masked = radial_profiles(holed[None], 10, (holed != 5.0)[None])[0]
    assert masked[4] == pytest.approx(1.0)
    assert np.isnan(radial_profiles(ring[None], 10, np.zeros((1, size, size)))[0]).all()
    point = np.zeros((1, size, size))
    point[0, 10, 10] = 1
    assert 0 < half_light_radius(point, 8)[0] < 0.6  # half of one pixel's area-equivalent disc
    assert 4 <= half_light_radius(ring[None], 8)[0] < 5
    assert np.isnan(half_light_radius(np.zeros((1, size, size)), 8)[0])


def test_half_light_radius_of_exponential_discs_is_not_quantised():
    size = 41
    yy, xx = np.mgrid[:size, :size] - 20
    r = np.hypot(yy, xx)
    scales = np.array([2.0, 2.1, 2.2, 2.3])  # exponential scale lengths (pixels): r50 = 1.678 h
    discs = np.exp(-r[None] / scales[:, None, None])
    r50 = half_light_radius(discs, 20)
    assert np.all(np.diff(r50) > 0)  # 5% larger discs, larger radii: no whole-pixel steps
    assert r50 == pytest.approx(1.678 * scales, rel=0.02)


def _pairs(tmp_path, n=24, size=16):
    rng = np.random.default_rng(0)
    ids = [f"g{i:02d}" for i in range(n)]
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    disk = np.exp(-np.hypot(yy, xx) / 2.0)
    amp = rng.uniform(0.5, 3, n)
    bb = np.stack([[disk * a * (k + 1) for k in range(5)] for a in amp]).astype(np.float32)
    ha = np.stack([[disk * a * 20] for a in amp]).astype(np.float32)
    psf = np.zeros((1, 5, 5), np.float32)
    attrs = {"pixscale_arcsec": 0.396, "psf_fwhm_arcsec": [1.4]}
    ivar_ha = np.full_like(ha, 100.0)
    ivar_ha[5] = 0  # g05: no Hα data
    sd = Shard(bb + rng.normal(0, 0.01, bb.shape).astype(np.float32), np.full_like(bb, 1e4), np.array(ids, object),
               attrs | {"bands": list("ugriz"), "survey": "sdss", "norm_softening": [0.03] * 5,
                        "psf_fwhm_arcsec": [1.4] * 5}, {"psf": np.repeat(psf, 5, 0)})  # fmt: skip
    noisy = ha + rng.normal(0, 0.1, ha.shape).astype(np.float32)
    hs = Shard(noisy[:-1], ivar_ha[:-1], np.array(ids[:-1], object),
               attrs | {"bands": ["Ha"], "survey": "halpha", "norm_softening": [0.3]}, {"psf": psf})  # fmt: skip
    write_shard(tmp_path / "sdss.h5", sd)
    write_shard(tmp_path / "ha.h5", hs)
    truth = pd.DataFrame({"id": ids, "flux_Ha": ha.sum((1, 2, 3))})
    return str(tmp_path / "sdss.h5"), str(tmp_path / "ha.h5"), truth


PARAMS = {
    "val_fraction": 0.2, "test_fraction": 0.3, "channels": [4, 8], "batch_size": 4, "epochs": 2, "patience": 2,
    "learning_rate": 0.003, "sys_error": 0.05, "aperture_arcsec": 3.0, "detect_snr": 5.0, "n_examples": 2,
}  # fmt: skip


def test_pairing_training_and_evaluation(tmp_path):
    sdss, ha, truth = _pairs(tmp_path)
    failures = FailureLog("halpha")
    data = load_pairs([sdss], [ha], PARAMS, seed=1, failures=failures)
    reasons = dict(zip(failures.frame()["id"], failures.frame()["reason"], strict=True))
    assert "not in the Hα survey" in reasons["g23"] and "no valid pixel in the Hα survey" in reasons["g05"]
    assert data.x.shape == (22, 5, 16, 16) and data.y.shape == (22, 1, 16, 16)
    states = []
    for _ in range(2):
        model, history, meta = train_model(data, PARAMS, seed=4, device=torch.device("cpu"))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # seeded: reproducible
    assert len(history) == 2 and meta["bands"] == list("ugriz")
    metrics, table, examples = evaluate(data, model, PARAMS, truth, FailureLog("halpha"), 1.0)
    assert list(metrics.columns) == METRIC_COLUMNS and list(metrics["subset"]) == ["all", "detectable"]
    assert list(table.columns) == PREDICTION_COLUMNS and len(table) == int((data.split == "test").sum())
    # the true total flux is the truth table's, not the noisy map's
    expected = truth.set_index("id").loc[table["id"], "flux_Ha"].to_numpy()
    assert np.allclose(table["flux_true"], expected)
    assert table["detectable"].all()  # bright, clean maps
    assert examples["predicted"].shape[1:] == (16, 16)


def test_a_perfect_prediction_scores_perfectly(tmp_path):
    """The evaluation's numbers can fail: a model returning the observed map gets r = 1 and 0 dex."""
    sdss, ha, truth = _pairs(tmp_path)
    data = load_pairs([sdss], [ha], PARAMS, seed=1)

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.lookup = {tuple(x.flatten()[:8].tolist()): y for x, y in zip(data.x, data.y, strict=True)}

        def forward(self, x):
            return torch.stack([self.lookup[tuple(xi.flatten()[:8].tolist())] for xi in x])

    obs_truth = truth.copy()
    sel = data.split == "test"
    flux = dict(zip(data.ids[sel], (0.3 * np.sinh(data.y[sel].numpy().astype(np.float64))).sum((1, 2, 3)), strict=True))
    obs_truth["flux_Ha"] = obs_truth["id"].map(flux)
    wide = PARAMS | {"aperture_arcsec": 10.0}  # the whole stamp: the truth above sums every pixel
    metrics, table, _ = evaluate(data, Echo(), wide, obs_truth, FailureLog("halpha"), 1.0)
    row = metrics.set_index("subset").loc["detectable"]
    assert row["pixel_corr_median"] == pytest.approx(1.0, abs=1e-4)
    assert row["flux_log_ratio_median_dex"] == pytest.approx(0.0, abs=1e-4)


DIFFUSION = {"channels": [4, 8], "epochs": 2, "sample_steps": 3, "n_draws": 3, "eta": 0.0, "loss_weight_power": 0.5}


def test_diffusion_model_trains_and_its_draws_are_scored_reproducibly(tmp_path):
    sdss, ha, truth = _pairs(tmp_path)
    params = PARAMS | {"diffusion": DIFFUSION}
    data = load_pairs([sdss], [ha], params, seed=1)
    model, history, meta = train_diffusion(data, params, seed=4, device=torch.device("cpu"))
    assert meta["kind"] == "diffusion" and meta["data_scale"] > 0 and len(history) == DIFFUSION["epochs"]
    metrics, table = evaluate_draws(data, model, meta, params, truth, FailureLog("halpha"), seed=9)
    assert list(metrics.columns) == METRIC_COLUMNS + DRAW_METRIC_COLUMNS
    assert list(table.columns) == PREDICTION_COLUMNS + DRAW_PREDICTION_COLUMNS
    assert list(metrics["subset"]) == ["all", "detectable"] and (metrics["n_draws"] == 3).all()
    assert (table["flux_draw_std_dex"].dropna() > 0).all()  # different starting noise, different maps
    assert table["pixel_coverage_1sigma"].between(0, 1).all()
    _, again = evaluate_draws(data, model, meta, params, truth, FailureLog("halpha"), seed=9)
    pd.testing.assert_frame_equal(table, again)  # seeded draws
    _, other = evaluate_draws(data, model, meta, params, truth, FailureLog("halpha"), seed=10)
    assert not np.allclose(table["flux_pred"], other["flux_pred"])


def test_draw_spread_and_coverage_of_known_draws(tmp_path, monkeypatch):
    """Draws at half and twice the observed map: a spread of sqrt(2) log10(2) dex in flux, every pixel covered."""
    import galmap.images2images.halpha

    sdss, ha, truth = _pairs(tmp_path)
    params = PARAMS | {"diffusion": DIFFUSION | {"n_draws": 2}}
    data = load_pairs([sdss], [ha], params, seed=1)
    obs = data.flux[data.split == "test", 0]
    monkeypatch.setattr(galmap.images2images.halpha, "sample_maps", lambda *a, **k: np.stack([0.5 * obs, 2.0 * obs]))
    obs_truth = truth.assign(flux_Ha=truth["flux_Ha"] * 1e3)  # far above the draws: never covered
    meta = {"data_scale": 1.0, "train_images_per_s": 1.0}
    metrics, table = evaluate_draws(data, torch.nn.Identity(), meta, params, obs_truth, FailureLog("halpha"), seed=0)
    assert np.allclose(table["flux_draw_std_dex"], np.sqrt(2) * np.log10(2))
    assert (table["pixel_coverage_1sigma"] == 1.0).all()  # |obs - 1.25 obs| <= the two draws' std, 1.06 obs
    assert (metrics["flux_coverage_1sigma"] == 0.0).all()
    covered, _ = evaluate_draws(data, torch.nn.Identity(), meta, params, truth, FailureLog("halpha"), seed=0)
    assert (covered["flux_coverage_1sigma"] > 0.5).all()  # the truth near the observed flux: within the spread
