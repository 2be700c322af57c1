"""The U-Net, the diffusion schedule and DDIM sampler, and the DESI -> Euclid super-resolution stage."""

from __future__ import annotations

import galsim
import numpy as np
import pandas as pd
import pytest
import torch

from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import Shard, write_shard
from galmap.images2images.superres import bin_psf, bin_stamps, fit_re, load_pairs, sersic_base_images, train_model
from galmap.nn.diffusion import alpha_sigma, ddim_sample, diffusion_loss, q_sample
from galmap.nn.losses import loss_weights
from galmap.nn.unet import UNet
from tests.conftest import REPO, merged_test_config


def test_cosine_schedule_is_variance_preserving_and_monotonic():
    t = torch.linspace(0, 1, 101)
    a, s = alpha_sigma(t)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a), atol=1e-6)
    assert (a[1:] <= a[:-1]).all() and a[0] > 0.999 and a[-1] < 0.01


class _Oracle(torch.nn.Module):
    """A denoiser that knows the clean image: its v is exact, so DDIM must return x0."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = x0
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        xt = x[:, :1]
        a, s = alpha_sigma(t)
        a, s = a.view(-1, 1, 1, 1), s.view(-1, 1, 1, 1)
        eps = (xt - a * self.x0) / s
        return a * eps - s * self.x0


def test_ddim_with_an_exact_denoiser_returns_the_clean_image():
    x0 = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(_Oracle(x0), torch.zeros(3, 2, 8, 8), 1, steps=5, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, x0, atol=1e-4)
    # and q_sample is the forward process the sampler inverts
    eps = torch.randn_like(x0)
    a, s = alpha_sigma(torch.full((3,), 0.3))
    assert torch.allclose(
        q_sample(x0, torch.full((3,), 0.3), eps), a.view(-1, 1, 1, 1) * x0 + s.view(-1, 1, 1, 1) * eps
    )


def test_ddim_with_zero_eta_is_deterministic_and_draws_differ():
    torch.manual_seed(0)
    model = UNet(3, 1, [4, 8], time_embedding=True).eval()
    cond = torch.randn(2, 2, 12, 12)
    noise = torch.randn(2, 1, 12, 12)
    a = ddim_sample(model, cond, 1, steps=4, eta=0.0, noise=noise)
    b = ddim_sample(model, cond, 1, steps=4, eta=0.0, noise=noise)
    assert torch.equal(a, b)
    c = ddim_sample(model, cond, 1, steps=4, eta=0.0, noise=noise + 1.0)
    assert not torch.allclose(a, c)
    # stochastic DDIM is reproducible from a seeded generator
    d1 = ddim_sample(model, cond, 1, steps=4, eta=1.0, generator=torch.Generator().manual_seed(5))
    d2 = ddim_sample(model, cond, 1, steps=4, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(d1, d2)


def test_diffusion_loss_decreases_on_tiny_data():
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    blobs = torch.stack([torch.exp(-((yy - c) ** 2 + (xx - c) ** 2) / 4) for c in (2.0, 3.5, 5.0, 4.0)])[:, None]
    cond, x0, mask = blobs, 2 * blobs, torch.ones_like(blobs, dtype=torch.bool)
    model = UNet(2, 1, [8, 16], time_embedding=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        loss = diffusion_loss(model, x0, cond, mask, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_a_pixel_without_data_does_not_reach_the_diffusion_loss():
    model = UNet(2, 1, [4, 8], time_embedding=True)
    x0 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(x0, dtype=torch.bool)
    mask[0, 0, 3, 3] = False
    bad = x0.clone()
    bad[0, 0, 3, 3] = float("nan")
    clean = x0.clone()
    clean[0, 0, 3, 3] = 0.0
    l_bad = diffusion_loss(model, bad, cond, mask, torch.Generator().manual_seed(2))
    l_clean = diffusion_loss(model, clean, cond, mask, torch.Generator().manual_seed(2))
    assert torch.isfinite(l_bad) and torch.equal(l_bad, l_clean)
    l_bad.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_diffusion_loss_weights_pixels():
    model = UNet(2, 1, [4, 8], time_embedding=True)
    x0 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(x0, dtype=torch.bool)
    mask[1, 0, :2] = False

    def loss(weight):
        return diffusion_loss(model, x0, cond, weight, torch.Generator().manual_seed(2))

    ones = mask.float()
    assert torch.allclose(loss(ones), loss(mask))  # weights of 1 are the plain masked mean
    assert torch.allclose(loss(3 * ones), 3 * loss(mask))
    # a pixel's weight scales its own term only: the loss is linear in the weights
    a, b = ones.clone(), ones.clone()
    a[0, 0, 4, 4], b[0, 0, 5, 5] = 5.0, 5.0
    both = ones.clone()
    both[0, 0, 4, 4], both[0, 0, 5, 5] = 5.0, 5.0
    assert torch.allclose(loss(both) - loss(ones), (loss(a) - loss(ones)) + (loss(b) - loss(ones)), rtol=1e-4)
    assert not torch.allclose(loss(a), loss(b))


def test_loss_weights_are_the_inverse_variance_to_a_power():
    weight = torch.tensor([4.0, 1.0, 0.0, 16.0, 9.0])[:, None, None, None].expand(5, 1, 2, 2).contiguous()
    split = np.array(["train", "train", "train", "val", "test"])
    plain = loss_weights(weight, split, 0.0)
    assert torch.equal(plain, (weight > 0).float())  # power 0: the masked mean; no weight where there is no data
    chi2 = loss_weights(weight, split, 1.0)
    assert torch.allclose(chi2[:, 0, 0, 0], torch.tensor([1.6, 0.4, 0.0, 6.4, 3.6]))  # mean 1 over training pixels
    half = loss_weights(weight, split, 0.5)
    assert torch.allclose(half[:, 0, 0, 0], torch.tensor([4 / 3, 2 / 3, 0.0, 8 / 3, 2.0]))
    with pytest.raises(ValueError, match="power must be >= 0"):
        loss_weights(weight, split, -1.0)


def test_pair_weights_are_the_inverse_variance_on_the_network_scale(paired_shards):
    """weight = 1 / var(target) with the target's noise carried through asinh / data_scale (sys_error 0)."""
    data = load_pairs(*[[p] for p in paired_shards], PARAMS | {"sys_error": 0.0}, seed=3)
    f, ivar = data.target_flux.astype(np.float64), data.target_ivar.astype(np.float64)
    s, scale = data.target_softening, data.data_scale
    slope = 1 / (scale * np.sqrt(f**2 + s**2))  # d(target)/d(flux)
    ok = ivar > 0
    expected = np.where(ok, ivar / np.where(ok, slope, 1) ** 2, 0)
    assert np.allclose(data.weight.numpy(), expected, rtol=1e-4)
    # the systematic term can only lower a weight, most on the brightest pixels
    sys = load_pairs(*[[p] for p in paired_shards], PARAMS | {"sys_error": 0.3}, seed=3)
    assert (sys.weight <= data.weight * (1 + 1e-6)).all()
    bright = f == f[ok].max()
    assert (sys.weight.numpy()[bright] < 0.5 * data.weight.numpy()[bright]).all()


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "paper.yaml"])
def test_unet_shapes_for_every_configured_size(name):
    cfg = load_config(REPO / "config" / name, REPO / "workflow/schemas/config.schema.yaml")
    sr, ha = cfg["superres"], cfg["halpha"]
    n_src = len(cfg["surveys"].get(sr["source_survey"], {"bands": ["g", "r", "z"]})["bands"])
    size = sr["target_px"]
    den = UNet(1 + n_src, 1, sr["channels"], time_embedding=True)
    reg = UNet(n_src, 1, sr["channels"])
    with torch.no_grad():
        assert den(torch.zeros(1, 1 + n_src, size, size), torch.zeros(1)).shape == (1, 1, size, size)
        assert reg(torch.zeros(1, n_src, size, size)).shape == (1, 1, size, size)
        n_in = len(cfg["surveys"].get(ha["input_survey"], {"bands": list("ugriz")})["bands"])
        for px in {cfg["surveys"].get(ha["target_survey"], {"stamp_px": 42})["stamp_px"], 42, 33}:
            net = UNet(n_in, 1, ha["channels"])
            assert net(torch.zeros(1, n_in, px, px)).shape == (1, 1, px, px)
    with pytest.raises(ValueError, match="diffusion time"):
        den(torch.zeros(1, 1 + n_src, size, size))


def test_binning_conserves_flux_and_propagates_masks():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 1, 8, 8)).astype(np.float32)
    ivar = np.full_like(img, 4.0)
    ivar[0, 0, 0, 0] = 0
    out, oivar = bin_stamps(img, ivar, 2)
    assert out.shape == (2, 1, 4, 4)
    assert out[1].sum() == pytest.approx(img[1].sum(), rel=1e-5)
    assert oivar[0, 0, 0, 0] == 0 and out[0, 0, 0, 0] == 0
    assert oivar[1, 0, 2, 2] == pytest.approx(1.0)  # four pixels of variance 1/4
    psf = np.zeros((1, 51, 51))
    psf[0, 25, 25] = 1
    b = bin_psf(psf, 2)
    assert b.shape[-1] % 2 == 1 and b.sum() == pytest.approx(1.0)


def test_re_of_a_known_galsim_sersic_image():
    scale, size, re_true = 0.2, 48, 1.0
    psf = galsim.Moffat(beta=2.5, fwhm=0.2)
    gal = galsim.Sersic(n=1.5, half_light_radius=re_true * np.sqrt(0.7), flux=100.0).shear(
        q=0.7, beta=30 * galsim.degrees
    )
    img = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=scale).array
    psf_img = psf.drawImage(nx=25, ny=25, scale=scale).array
    rng = np.random.default_rng(1)
    sigma = 0.01
    data = (img + rng.normal(0, sigma, img.shape))[None, None].astype(np.float32)
    re, flag = fit_re(data, np.full_like(data, 1 / sigma**2), psf_img[None], scale, {"fit_max_iter": 40})
    # the half-light semi-major axis of a sheared profile is hlr / sqrt(q)
    assert re[0] == pytest.approx(re_true, rel=0.03)
    assert flag[0] & 16 == 0


def _shard(survey, bands, scale, ids, size, rng, soft=0.1, blank=()):
    n = len(ids)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    gal = np.exp(-(yy**2 + xx**2) / (2 * (size / 8) ** 2))
    images = np.stack([[gal * (1 + 0.3 * k) * (1 + i % 3) for k in range(len(bands))] for i in range(n)])
    images = (images + rng.normal(0, 0.01, images.shape)).astype(np.float32)
    ivar = np.full_like(images, 1e4)
    for i in blank:
        ivar[i] = 0
    psf = np.zeros((len(bands), 15, 15), np.float32)
    psf[:, 7, 7] = 1
    attrs = {
        "bands": list(bands), "pixscale_arcsec": scale, "survey": survey, "psf_fwhm_arcsec": [1.0] * len(bands),
        "norm_softening": [soft] * len(bands),
    }  # fmt: skip
    return Shard(images, ivar, np.asarray(ids, dtype=object), attrs, {"psf": psf})


@pytest.fixture
def paired_shards(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"g{i:02d}" for i in range(24)]
    src = _shard("decals", ["g", "r", "z"], 0.262, ids, 24, rng)
    tgt = _shard("euclid", ["VIS"], 0.1, ids[:-1], 64, rng, blank=(3,))  # g23 missing, g03 without data
    write_shard(tmp_path / "src.h5", src)
    write_shard(tmp_path / "tgt.h5", tgt)
    return str(tmp_path / "src.h5"), str(tmp_path / "tgt.h5")


PARAMS = {
    "target_bin": 2, "target_px": 16, "val_fraction": 0.2, "test_fraction": 0.2, "channels": [4, 8],
    "batch_size": 4, "learning_rate": 0.002, "diffusion_epochs": 1, "regression_epochs": 1,
    "sys_error": 0.05, "loss_weight_power": 0.5, "sersic_base": False,
}  # fmt: skip


def test_pairs_record_missing_galaxies_and_training_is_reproducible(paired_shards):
    src, tgt = paired_shards
    failures = FailureLog("superres")
    data = load_pairs([src], [tgt], PARAMS, seed=3, failures=failures)
    reasons = dict(zip(failures.frame()["id"], failures.frame()["reason"], strict=True))
    assert "not in the target survey" in reasons["g23"] and "no valid pixel in the target" in reasons["g03"]
    assert len(data.ids) == 22 and data.cond.shape == (22, 3, 16, 16) and data.target.shape == (22, 1, 16, 16)
    assert torch.isfinite(data.cond).all() and torch.isfinite(data.target).all()
    states = []
    for _ in range(2):
        model, history, meta = train_model("diffusion", data, PARAMS, seed=11, device=torch.device("cpu"))
        states.append(model.state_dict())
        assert meta["data_scale"] == pytest.approx(data.data_scale) and len(history) == 1
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _fits(ids, bands=("g", "r", "z"), **shape):
    """Structure-stage rows (one per galaxy and band) with the shape ``shape`` shared by the bands."""
    base = {"n": 1.0, "re_arcsec": 1.0, "q": 1.0, "pa_deg": 0.0, "x0_px": 11.5, "y0_px": 11.5, "flag": 0} | shape
    rows = [base | {"id": g, "band": b, "flux": 10.0 * (k + 1)} for g in ids for k, b in enumerate(bands)]
    return pd.DataFrame(rows)


def test_sersic_base_is_the_source_fit_seen_at_the_target_resolution():
    src_scale, src_px, scale, size = 0.262, 24, 0.2, 32
    n, hlr, q, pa, dx, dy, flux = 1.5, 0.6, 0.6, 30.0, 0.3, -0.2, 50.0
    psf = galsim.Moffat(beta=3.0, fwhm=0.3)
    psf_img = psf.drawImage(nx=25, ny=25, scale=scale, method="no_pixel").array
    gal = galsim.Sersic(n=n, half_light_radius=hlr, flux=flux).shear(q=q, beta=pa * galsim.degrees).shift(dx, dy)
    truth = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=scale).array
    c = (src_px - 1) / 2
    centre = {"x0_px": c + dx / src_scale, "y0_px": c + dy / src_scale}
    fits = _fits(["a", "b", "c"], n=n, re_arcsec=hlr / np.sqrt(q), q=q, pa_deg=pa, **centre)
    fits.loc[fits["id"] == "c", "flag"] = 16  # no data: no usable fit
    unit, band_flux, why = sersic_base_images(
        fits, ["a", "c", "missing"], ["g", "r", "z"], src_scale, src_px, size, scale, (psf_img / psf_img.sum())[None]
    )
    assert unit.shape == (3, 1, size, size) and band_flux.shape == (3, 3)
    # the GalSim image of the same galaxy on the target grid, to 3 % of its peak (1.4 % measured, in the cusp;
    # the position angle's sign flipped: 16 %, the offset's: 70 %)
    assert np.abs(unit[0, 0] * flux - truth).max() < 0.03 * truth.max()
    assert unit[0].sum() == pytest.approx(1.0, abs=0.02) and list(band_flux[0]) == [10.0, 20.0, 30.0]
    assert set(why) == {"c", "missing"} and "not usable (flag 16)" in why["c"] and "no Sérsic fit" in why["missing"]
    assert not unit[1:].any() and not band_flux[1:].any()


def test_the_networks_learn_the_residual_over_the_sersic_base(paired_shards):
    src, tgt = paired_shards
    ids = [f"g{i:02d}" for i in range(24)]
    # the fixture's galaxies are Gaussians of sigma 3 source pixels: a Sérsic n = 0.5 of Re = 1.1774 sigma
    fits = _fits([g for g in ids if g != "g05"], n=0.5, re_arcsec=1.1774 * 3 * 0.262, x0_px=11.5, y0_px=11.5)
    # their fluxes (nanomaggies): 2 pi sigma^2 times the fixture's amplitude of band k and galaxy i
    k = fits["band"].map({"g": 0, "r": 1, "z": 2})
    fits["flux"] = 2 * np.pi * 9 * (1 + 0.3 * k) * (1 + fits["id"].str[1:].astype(int) % 3)
    params = PARAMS | {"sersic_base": True}
    with pytest.raises(ValueError, match="sersic_base needs the source survey's Sérsic fits"):
        load_pairs([src], [tgt], params, seed=3)
    failures = FailureLog("superres")
    data = load_pairs([src], [tgt], params, seed=3, failures=failures, sersic=fits)
    reasons = dict(zip(failures.frame()["id"], failures.frame()["reason"], strict=True))
    assert "left out of the training" in reasons["g05"] and data.split[list(data.ids).index("g05")] == "unused"
    assert data.cond.shape == (22, 4, 16, 16) and torch.equal(data.cond[:, 3], torch.from_numpy(data.base[:, 0]))
    assert not data.base_flux[list(data.ids).index("g05")].any()
    # the base carries most of the target: the residual's scale is a fraction of the target's
    assert 0 < data.residual_scale < 0.5
    # the networks' outputs go back to flux through the base: the learned target is the Euclid image
    valid = data.mask.numpy()
    every = np.arange(len(data.ids))
    assert np.allclose(data.to_flux(data.target, every)[valid], data.target_flux[valid], rtol=1e-4, atol=1e-5)
    model, _, meta = train_model("regression", data, params, seed=1, device=torch.device("cpu"))
    # the residual's scale recomputed from the flux images: the training galaxies' Euclid pixels and their
    # Sérsic base, both on the asinh scale, their difference's standard deviation (the networks' unit)
    train = (data.split == "train")[:, None, None, None] & valid
    on_scale = [np.arcsinh(f / data.target_softening) / data.data_scale for f in (data.target_flux, data.base_flux)]
    expected = np.std((on_scale[0] - on_scale[1])[train])
    assert data.residual_scale == pytest.approx(expected, rel=1e-3)
    assert data.residual_scale < 0.5 * np.std(on_scale[0][train])  # the base carries most of the target
    assert meta["sersic_base"] and meta["residual_scale"] == pytest.approx(expected, rel=1e-3)
    # evaluation reads the model's scales: the same network targets
    again = load_pairs([src], [tgt], params, seed=3, sersic=fits, scales=meta)
    assert torch.equal(again.target, data.target) and torch.equal(again.cond, data.cond)
    off = load_pairs([src], [tgt], PARAMS, seed=3)
    assert off.cond.shape[1] == 3 and not off.base.any() and off.residual_scale == 1.0


def test_config_references_and_the_stage_plan():
    import yaml

    from galmap.core.config import ConfigError, validate_config
    from galmap.data.plan import stage_plan

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    cfg = merged_test_config()
    with pytest.raises(ConfigError, match=r"'superres\.target_survey' names survey 'hsc'"):
        validate_config(cfg | {"superres": {"target_survey": "hsc"}}, schema)
    with pytest.raises(ConfigError, match=r"'superres\.sersic_base'.*structure\.survey 'decals'.*'sdss'"):
        validate_config(cfg | {"superres": {"source_survey": "sdss"}}, schema)
    validate_config(cfg | {"superres": {"source_survey": "sdss", "sersic_base": False}}, schema)
    with pytest.raises(ConfigError, match=r"'halpha\.target_survey'.*exactly one band"):
        validate_config(cfg | {"halpha": {"target_survey": "sdss"}}, schema)
    plan = stage_plan(validate_config(cfg, schema))
    assert plan["superres"] is None and plan["halpha"] is None
    # without the sdss survey (and with the defaults, not set by the user) the stage is skipped, not an error
    no_sdss = dict(cfg, surveys={k: v for k, v in cfg["surveys"].items() if k != "sdss"})
    no_sdss.pop("halpha")
    # the domain pairs are the embedded default's too (not the user's): the SDSS pair is skipped with its survey
    explicit = dict(no_sdss, domain={k: v for k, v in no_sdss["domain"].items() if k != "pairs"})
    plan = stage_plan(validate_config(no_sdss, schema, explicit))
    assert "halpha.input_survey 'sdss'" in plan["halpha"] and plan["superres"] is None


def test_psnr_of_all_galaxies_at_once_is_the_per_galaxy_psnr():
    """The vectorised PSNR equals the per-galaxy definition (float64 rounding), with NaN where it has none."""
    from galmap.images2images.superres import psnr

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(9, 1, 20, 20)) * 5
    img = ref + rng.normal(size=ref.shape)
    valid = rng.random(ref.shape) < 0.8
    valid[1] = False  # no valid pixel
    img[2] = ref[2]  # a perfect image: infinite PSNR, reported as NaN
    ref[3] = 1.0  # a flat reference: no peak

    def one(r, m, v):
        if not v.any() or r[v].max() == r[v].min() or np.array_equal(r[v], m[v]):
            return np.nan
        return 10 * np.log10((r[v].max() - r[v].min()) ** 2 / np.mean((r[v] - m[v]) ** 2))

    expected = np.array([one(ref[i], img[i], valid[i]) for i in range(len(ref))])
    got = psnr(ref, img, valid)
    assert list(np.flatnonzero(np.isnan(got))) == [1, 2, 3]
    np.testing.assert_allclose(got, expected, rtol=1e-13, equal_nan=True)
    # float32 images: the sums are float64; the old per-galaxy float32 arithmetic agreed to ~1e-5 dB
    got32 = psnr(ref.astype(np.float32), img.astype(np.float32), valid)
    np.testing.assert_allclose(got32, expected, atol=1e-4, equal_nan=True)


def test_the_decals_fit_uses_each_galaxys_own_psf(tmp_path):
    """Two identical galaxies seen through PSFs of 0.9" and 1.6": with each galaxy's own PSF (the catalogue's
    ``psf_fwhm``, as the structure stage fits them) both radii are right; with one nominal PSF they are not."""
    from galmap.core.surveys import moffat_images
    from galmap.images2images.superres import source_psfs

    scale, size, beta, re_true = 0.262, 48, 3.5, 1.2
    fwhm = np.array([[0.9], [1.6]])
    gal = galsim.Sersic(n=1.0, half_light_radius=re_true, flux=200.0)
    img = np.stack([galsim.Convolve(gal, galsim.Moffat(beta=beta, fwhm=f)).drawImage(nx=size, ny=size, scale=scale)
                    .array for f in fwhm[:, 0]])[:, None].astype(np.float32)  # fmt: skip
    ivar = np.full_like(img, 1e4)
    nominal = moffat_images(np.array([1.2]), beta, scale, 25, pixel=False)
    attrs = {"bands": ["r"], "pixscale_arcsec": scale, "psf_beta": beta}
    shard = Shard(img, ivar, np.array(["a", "b"], dtype=object), attrs, {"psf": nominal, "psf_fwhm": fwhm})
    own = source_psfs(shard, np.arange(2))
    assert own.shape == (2, 1, 25, 25)
    re_own, flag = fit_re(img, ivar, nominal, scale, {"fit_max_iter": 40}, own)
    re_nom, _ = fit_re(img, ivar, nominal, scale, {"fit_max_iter": 40})
    assert np.allclose(re_own, re_true, rtol=0.03) and (flag & 16 == 0).all()
    assert re_nom[1] > 1.1 * re_true  # the broader PSF's blur taken for size
    assert source_psfs(Shard(img, ivar, shard.ids, attrs, {"psf": nominal}), np.arange(2)) is None


def test_pairs_carry_the_source_psf_sizes(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"g{i:02d}" for i in range(6)]
    src = _shard("decals", ["g", "r", "z"], 0.262, ids, 24, rng)
    src.extra["psf_fwhm"] = np.arange(18, dtype=np.float32).reshape(6, 3) / 10 + 1
    tgt = _shard("euclid", ["VIS"], 0.1, ids[::-1], 64, rng)  # another order: pairing follows the ids
    write_shard(tmp_path / "src.h5", src)
    write_shard(tmp_path / "tgt.h5", tgt)
    data = load_pairs([str(tmp_path / "src.h5")], [str(tmp_path / "tgt.h5")], PARAMS, seed=3)
    order = [ids.index(g) for g in data.ids]
    assert np.allclose(data.native.extra["psf_fwhm"], src.extra["psf_fwhm"][order])
