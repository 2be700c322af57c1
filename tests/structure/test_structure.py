"""Structure stage: the Sérsic fitter against the mock truth, its Jacobian, bad input, morphometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.surveys import surveys_from_config
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.flags import SERSIC_FLAGS
from galmap.structure.measure import MORPH_COLUMNS, SERSIC_COLUMNS, fit_sersic_shard, morphometry_shard
from galmap.structure.sersic import SersicFitter
from tests.conftest import with_galaxy as _with
from tests.conftest import with_pipeline_decals_stamps


@pytest.fixture(scope="module")
def sersic_sample(test_config):
    """Isolated single-Sérsic mock galaxies at S/N ~30-200, rendered and preprocessed."""
    mock = dict(test_config["mock"]) | {
        "n_galaxies": 60,
        "type_fractions": {"elliptical": 1.0, "lenticular": 0.0, "spiral": 0.0, "irregular": 0.0},
        "merger_fraction": 0.0,
        "neighbours": {"enabled": False},
        "mag_r_range": [17.0, 19.0],
        "anomalies": {"fraction": 0.0},
        # the fitter's own accuracy: observed through the PSF it is given (tests/mock/test_systematics.py: the mismatch)
        "systematics": dict(test_config["mock"]["systematics"]) | {"psf": {"enabled": False}},
    }
    cfg = test_config | {"mock": mock, "surveys": with_pipeline_decals_stamps(test_config)}
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [decals], cfg["seed"], progress=False)["decals"]
    return truth, preprocess_shard(raw, cfg["preprocess"])


@pytest.fixture(scope="module")
def sersic_fit(sersic_sample):
    truth, shard = sersic_sample
    log = FailureLog("structure")
    rows = fit_sersic_shard(shard, {"batch_size": 32}, log)
    return truth, rows, log


def _float64_problem(shard, fitter: SersicFitter, n: int, seed: int):
    """Random (unbounded) parameters near the stamp centre, the data and sqrt(ivar) of the first ``n`` galaxies."""
    gen = torch.Generator().manual_seed(seed)
    t = 0.3 * torch.randn(n, fitter.n_par, generator=gen, dtype=torch.float64)
    t[:, :2] += 23.5
    t[:, 3] += 1.5
    t[:, 6 : 6 + fitter.nb] += 3.0
    data = torch.as_tensor(shard.images[:n], dtype=torch.float64)
    return t, data, torch.sqrt(torch.as_tensor(shard.ivar[:n], dtype=torch.float64))


def test_jacobian_is_exact(rendered):
    """The analytic Jacobian equals central finite differences (with and without sky)."""
    shard = preprocess_shard(rendered["decals"], {"psf_stamp_px": 15})
    for sky in (False, True):
        fitter = SersicFitter(shard.extra["psf_profile"], shard.images.shape[2:], fit_sky=sky, dtype=torch.float64)
        t, data, w = _float64_problem(shard, fitter, 3, seed=0)
        res, jac = fitter._jacobian(t, data, w)
        torch.testing.assert_close(res, fitter._residuals(t, data, w))
        for k in range(fitter.n_par):
            up, down = t.clone(), t.clone()
            up[:, k] += 1e-6
            down[:, k] -= 1e-6
            num = (fitter._residuals(up, data, w) - fitter._residuals(down, data, w)) / 2e-6
            scale = num.abs().max()
            assert (jac[..., k] - num).abs().max() <= 1e-5 * scale + 1e-9, (sky, k)


def test_normal_equations_match_the_dense_jacobian(rendered):
    """J^T J, J^T r and chi2 from the Jacobian's blocks (in chunks) equal the dense products, own PSFs too."""
    shard = preprocess_shard(rendered["decals"], {"psf_stamp_px": 15})
    psf = shard.extra["psf_profile"]
    for sky in (False, True):
        fitter = SersicFitter(psf, shard.images.shape[2:], fit_sky=sky, dtype=torch.float64)
        fitter.cpu_chunk = 2  # 5 galaxies: chunks of 2, 2 and 1
        t, data, w = _float64_problem(shard, fitter, 5, seed=1)
        own = fitter.model.psf_spectrum(np.stack([np.roll(psf, k, axis=-1) for k in range(5)]))
        for pf in (None, own):
            res, jac = fitter._jacobian(t, data, w, pf)
            jtj, grad, chi2 = fitter._normal_equations(t, data, w, pf)
            torch.testing.assert_close(jtj, jac.transpose(1, 2) @ jac)
            torch.testing.assert_close(grad, (jac.transpose(1, 2) @ res[..., None])[..., 0])
            torch.testing.assert_close(chi2, (res**2).sum(1))


def test_fft_convolution_equals_the_direct_one():
    """The padded FFT size is the smallest that keeps the circular convolution exact on the stamp."""
    from scipy.signal import convolve2d

    from galmap.structure.sersic import SersicModel

    rng = np.random.default_rng(0)
    for (h, w), p in (((40, 40), 25), ((64, 48), 51), ((20, 30), 41)):
        psf = rng.random((2, p, p))
        model = SersicModel((h, w), psf / psf.sum(axis=(1, 2), keepdims=True), dtype=torch.float64)
        assert model.fh < h + p - 1 and model.fw < w + p - 1  # smaller than the full linear convolution
        images = rng.random((3, 2, h, w))
        conv = model.convolve(torch.as_tensor(images)).numpy()  # (B, K, bands, H, W)
        for i, k, b in np.ndindex(3, 2, 2):
            direct = convolve2d(images[i, k], psf[b] / psf[b].sum(), "same")
            np.testing.assert_allclose(conv[i, k, b], direct, atol=1e-12)


def test_noiseless_sersic_recovered_exactly():
    """Noiseless PSF-convolved Sérsics rendered by the fitter's own model are fitted back to their parameters."""
    from galmap.core.surveys import moffat_images
    from galmap.structure.sersic import SersicModel

    psf = moffat_images(np.array([1.3, 1.2]), 3.5, 0.262, 25, pixel=False).astype(np.float64)
    truth = {
        "xc": [31.7, 32.2, 31.9, 32.4], "yc": [32.3, 31.6, 32.0, 31.8], "n": [0.8, 1.0, 2.5, 4.0],
        "re": [3.0, 6.0, 4.0, 8.0], "q": [0.5, 0.8, 0.3, 0.9], "pa": [0.3, 2.0, 1.2, 0.7],
    }  # fmt: skip
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in truth.items()}
    flux = torch.tensor([[50.0, 80.0], [30.0, 20.0], [60.0, 90.0], [100.0, 150.0]], dtype=torch.float64)
    model = SersicModel((64, 64), psf, oversample=2, dtype=torch.float64)
    with torch.no_grad():
        images = model.render(p["xc"], p["yc"], p["n"], p["re"], p["q"], p["pa"], flux).numpy()
    ivar = np.full(images.shape, 1e4)
    fitter = SersicFitter(psf, (64, 64), fit_sky=False, device="cpu")
    fit = fitter.fit(images, ivar)
    assert (fit.flag == 0).all(), fit.flag
    np.testing.assert_allclose(fit.n, truth["n"], rtol=2e-3)
    np.testing.assert_allclose(fit.re_px, truth["re"], rtol=2e-3)
    np.testing.assert_allclose(fit.q, truth["q"], atol=2e-3)
    np.testing.assert_allclose(np.stack([fit.x0, fit.y0]), [truth["xc"], truth["yc"]], atol=2e-3)
    np.testing.assert_allclose(fit.flux, flux.numpy(), rtol=2e-3)
    assert (fit.n_iter < 30).all()


def test_single_sersic_recovered(sersic_fit):
    """S/N > 30 single-Sérsic galaxies: the issue's accuracy targets, and honest errors."""
    truth, rows, log = sersic_fit
    r = rows[rows["band"] == "r"].reset_index(drop=True)
    snr = r["flux"] / r["flux_err"]
    good = (snr > 30) & (r["flag"] == 0)
    assert good.sum() >= 40
    t = truth[good.to_numpy()]
    f = r[good]
    n_true, re_true, q_true = t["bulge_n"].to_numpy(), t["bulge_re_arcsec"].to_numpy(), t["bulge_q"].to_numpy()
    assert np.median(np.abs(f["n"] - n_true) / n_true) <= 0.05
    assert np.median(np.abs(f["re_arcsec"] - re_true) / re_true) <= 0.03
    assert np.median(np.abs(f["q"] - q_true)) <= 0.03
    for col, true in (("n", n_true), ("re_arcsec", re_true), ("q", q_true)):
        err = f["re_err" if col == "re_arcsec" else f"{col}_err"].to_numpy()
        pulls = (f[col].to_numpy() - true) / err
        assert 0.7 <= np.std(pulls) <= 1.5, (col, np.std(pulls))
    # total fluxes (magnitudes) too, per band
    for band in ("g", "r", "z"):
        fb = rows[rows["band"] == band].reset_index(drop=True)[good]
        assert np.median(np.abs(fb["flux"] / t[f"flux_{band}"].to_numpy() - 1)) < 0.03
    assert len(log) == 0


def test_output_has_a_row_per_galaxy_and_band(sersic_fit, sersic_sample):
    truth, rows, _ = sersic_fit
    assert list(rows.columns) == SERSIC_COLUMNS
    assert len(rows) == len(truth) * 3
    assert rows["shape_shared"].all()
    # the shape is shared by the bands of a galaxy
    assert (rows.groupby("id")["n"].nunique() == 1).all()
    assert (rows["n_iter"] < 40).mean() > 0.9


def test_bad_input_is_flagged_recorded_and_kept(sersic_sample, test_config):
    truth, good = sersic_sample
    raw = Shard(good.images[:8].copy(), good.ivar[:8].copy(), good.ids[:8], {k: v for k, v in good.attrs.items()})
    raw = _with(raw, 0, images=np.full(raw.images[0].shape, np.nan))  # all NaN
    raw = _with(raw, 1, images=np.zeros(raw.images[1].shape))  # all zero: nothing detected
    raw = _with(raw, 2, ivar=np.zeros(raw.ivar[2].shape))  # zero ivar
    pre_log = FailureLog("preprocess")
    shard = preprocess_shard(raw, test_config["preprocess"], pre_log)
    # a galaxy with a segment but no positive flux at all
    shard.images[3] = -np.abs(shard.images[3]) - 1.0
    log = FailureLog("structure")
    rows = fit_sersic_shard(shard, {}, log)
    assert len(rows) == 8 * 3
    by_id = rows.groupby("id").first()
    for i in (0, 1, 2):
        gid = shard.ids[i]
        assert by_id.loc[gid, "flag"] & SERSIC_FLAGS["skipped"]
        assert np.isnan(by_id.loc[gid, "n"])
    reasons = log.frame().set_index("id")["reason"]
    assert "no valid pixel" in reasons[shard.ids[0]]
    assert "no source in the segmentation" in reasons[shard.ids[1]]
    assert "no valid pixel" in reasons[shard.ids[2]]
    assert shard.ids[3] in reasons.index
    # the rest of the batch was fitted
    assert by_id.loc[list(shard.ids[4:]), "n"].notna().all()


def test_morphometry_tracks_the_truth(test_config):
    """statmorph concentration rises with the bulge fraction; Gini too; rows for all."""
    from scipy.stats import spearmanr

    mock = dict(test_config["mock"]) | {"n_galaxies": 40, "merger_fraction": 0.0}
    cfg = test_config | {"mock": mock}
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [decals], cfg["seed"], progress=False)["decals"]
    shard = preprocess_shard(raw, cfg["preprocess"])
    log = FailureLog("structure")
    morph = morphometry_shard(shard, "r", log, processes=2)
    assert list(morph.columns) == MORPH_COLUMNS and len(morph) == len(truth)
    ok = morph["flag"] <= 1
    assert ok.mean() > 0.8
    rho_c = spearmanr(morph.loc[ok, "concentration"], truth.loc[ok, "bulge_frac"]).statistic
    rho_g = spearmanr(morph.loc[ok, "gini"], truth.loc[ok, "bulge_frac"]).statistic
    assert rho_c > 0.5, rho_c
    assert rho_g > 0.3, rho_g
    assert len(log) == int((morph["flag"] >= 4).sum())


def test_morphometry_bad_input(sersic_sample):
    _, good = sersic_sample
    shard = Shard(good.images[:3].copy(), good.ivar[:3].copy(), good.ids[:3], good.attrs, dict(good.extra))
    shard.extra = {
        k: (v[:3].copy() if k in ("segmap", "mask", "flags", "background") else v) for k, v in good.extra.items()
    }
    shard.extra["segmap"][1] = False  # empty segmentation
    log = FailureLog("structure")
    morph = morphometry_shard(shard, "r", log)
    assert len(morph) == 3
    assert morph.loc[1, "flag"] == 4 and np.isnan(morph.loc[1, "gini"])
    assert log.frame()["id"].tolist() == [shard.ids[1]]
    assert "no source in the segmentation" in log.frame()["reason"].iloc[0]
    assert morph.loc[0, "flag"] <= 1 and np.isfinite(morph.loc[0, "gini"])
