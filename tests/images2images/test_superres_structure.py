"""The structure comparison of the super-resolution stage: the arm measure, coverage, calibration, invented arms."""

from __future__ import annotations

import galsim
import numpy as np
import pandas as pd
import pytest
import torch

from galmap.images2images.superres_structure import (
    arm_amplitude,
    arm_threshold,
    bias_scatter,
    calibrate_draws,
    featureless,
    fit_spread_scale,
    interval_coverage,
    invented_arms,
    measure_structure,
    structure_table,
)
from galmap.nn.diffusion import sample_draws

SCALE, SIZE = 0.2, 48


def _galsim_disk(arms: bool, q: float = 0.6, seed: int = 3, sigma: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """An inclined exponential disk, with or without two logarithmic spiral arms, drawn by GalSim with a Moffat PSF."""
    n_fine, fine = 192, 0.05
    y, x = (np.mgrid[:n_fine, :n_fine] - (n_fine - 1) / 2) * fine
    r, phi = np.hypot(x, y), np.arctan2(y, x)
    h = 0.8  # arcsec
    disk = np.exp(-r / h)
    if arms:  # two arms of 20 degree pitch carrying ~40 % modulation
        pattern = np.cos(2 * (phi - np.log(np.maximum(r, 1e-3)) / np.tan(np.radians(20))))
        disk = disk * (1 + 0.8 * np.clip(pattern, 0, None) * (r > 0.4))
    prof = galsim.InterpolatedImage(galsim.Image(disk.astype(np.float64), scale=fine), flux=50.0)
    prof = prof.shear(q=q, beta=20 * galsim.degrees)
    img = galsim.Convolve(prof, galsim.Moffat(beta=2.5, fwhm=0.2)).drawImage(nx=SIZE, ny=SIZE, scale=SCALE).array
    noisy = img + np.random.default_rng(seed).normal(0, sigma, img.shape)
    return noisy.astype(np.float32), img


def test_the_arm_measure_tells_a_two_armed_spiral_from_the_same_disk_without_arms():
    spiral, clean_s = _galsim_disk(True)
    plain, clean_p = _galsim_disk(False)
    seg = np.stack([c > 0.02 * c.max() for c in (clean_s, clean_p)])
    a = arm_amplitude(np.stack([spiral, plain]), seg)
    assert np.isfinite(a).all()
    assert a[0] > 3 * a[1]  # the inclined disk without arms is deprojected: little m = 2 left
    assert a[1] < 0.05


def test_structure_measures_on_galsim_images():
    spiral, clean_s = _galsim_disk(True)
    plain, clean_p = _galsim_disk(False)
    images = np.stack([spiral, plain])[:, None]
    ivar = np.full_like(images, 1 / 0.002**2)
    seg = np.stack([c > 0.02 * c.max() for c in (clean_s, clean_p)]).astype(np.int32)
    psf = galsim.Moffat(beta=2.5, fwhm=0.2).drawImage(nx=25, ny=25, scale=SCALE).array[None]
    table = measure_structure(images, ivar, seg, psf, SCALE, {"fit_max_iter": 40})
    assert list(table.columns) == [
        "sersic_n", "re_arcsec", "concentration", "asymmetry", "smoothness", "gini", "m20", "arm_m2", "morph_flag"
    ]  # fmt: skip
    assert table.notna().all().all()
    # an exponential disk: n near 1 and Re = 1.68 h over sqrt(q) along the major axis (the arms move it a little)
    assert table["sersic_n"].iloc[1] == pytest.approx(1.0, abs=0.25)
    assert table["re_arcsec"].iloc[1] == pytest.approx(1.678 * 0.8 / np.sqrt(0.6), rel=0.1)
    assert table["arm_m2"].iloc[0] > 3 * table["arm_m2"].iloc[1]
    assert 2.2 < table["concentration"].iloc[1] < 3.3  # an exponential disk's C is ~2.7


def test_coverage_of_a_synthetic_gaussian_posterior():
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 3, 3000)
    truth = mu + rng.normal(0, 1, mu.shape)  # the truth drawn from the posterior N(mu, 1)
    right = mu + rng.normal(0, 1, (200, mu.size))
    narrow = mu + rng.normal(0, 0.5, (200, mu.size))
    assert interval_coverage(truth, right) == pytest.approx(0.68, abs=0.025)
    assert interval_coverage(truth, narrow) == pytest.approx(0.383, abs=0.025)  # 2 Phi(0.5) - 1
    # the spread calibration finds the factor 2 of the too narrow draws, and the calibrated draws cover 68 %
    k = fit_spread_scale(narrow[:, :1500], truth[:1500], np.ones(1500, bool))
    assert k == pytest.approx(2.0, rel=0.1)
    assert interval_coverage(truth[1500:], calibrate_draws(narrow[:, 1500:], k)) == pytest.approx(0.68, abs=0.03)
    # a galaxy without draws or truth does not count
    t = truth[:10].copy()
    t[0] = np.nan
    d = right[:, :10].copy()
    d[:, 1] = np.nan
    full = interval_coverage(truth[2:10], right[:, 2:10])
    assert interval_coverage(t, d) == pytest.approx(full)


def test_bias_and_scatter_remove_the_offset():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 2, 5000)
    b, s, n = bias_scatter(ref + 0.3 + rng.normal(0, 0.1, ref.size), ref)
    assert b == pytest.approx(0.3, abs=0.01) and s == pytest.approx(0.1, rel=0.05) and n == ref.size
    b, s, _ = bias_scatter(ref * 1.1, ref, log_scale=True)
    assert b == pytest.approx(np.log10(1.1)) and s == pytest.approx(0.0, abs=1e-12)


def test_structure_table_rows_and_coverage():
    rng = np.random.default_rng(2)
    q = ("sersic_n", "re_arcsec", "concentration", "asymmetry", "smoothness", "gini", "m20", "arm_m2")
    euclid = pd.DataFrame({k: rng.uniform(1, 2, 50) for k in q})
    draws = [euclid + rng.normal(0, 0.1, euclid.shape) for _ in range(30)]
    table = structure_table({"bicubic": euclid + 0.5}, draws, euclid, "val")
    bic = table[table["method"] == "bicubic"].set_index("quantity")
    assert bic.loc["gini", "bias"] == pytest.approx(0.5) and bic.loc["gini", "scatter"] == pytest.approx(0.0)
    dd = table[table["method"] == "diffusion_draws"].set_index("quantity")
    assert dd["coverage_16_84"].between(0.4, 1.0).all() and bic["coverage_16_84"].isna().all()
    assert set(table["split"]) == {"val"}


def test_featureless_galaxies_and_invented_arms():
    truth = pd.DataFrame({
        "arm_count": [0, 2, 0, 0, 0], "arm_frac": [0, 0.3, 0, 0, 0], "bar_frac": [0, 0, 0.2, 0, 0],
        "n_clumps": [0, 0, 0, 3, 0], "clump_frac": [0, 0, 0, 0.1, 0], "companion_flux_ratio": [0, 0, 0, 0, 0.5],
    })  # fmt: skip
    assert featureless(truth).tolist() == [True, False, False, False, False]
    arm = np.array([0.01, 0.02, 0.2, 0.3, 0.25, 0.03])
    assert arm_threshold(arm, arm > 0.1) == pytest.approx(0.03)
    draws = np.array([[0.2, 0.01, 0.2], [0.2, 0.01, 0.01], [0.01, 0.01, 0.01]])  # (D, N): galaxy 0 gets arms
    frac, n = invented_arms(draws, np.array([0.01, 0.01, 0.01]), 0.05)
    assert n == 3 and frac == pytest.approx(1 / 3)
    frac, _ = invented_arms(draws, np.array([0.2, 0.01, 0.01]), 0.05)  # Euclid shows them: not invented
    assert frac == 0


class _Echo(torch.nn.Module):
    """A 'denoiser' whose v is zero: DDIM then returns a multiple of the starting noise."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        return torch.zeros_like(x[:, :1])


def test_all_draws_of_a_galaxy_come_from_one_batch_and_are_reproducible():
    cond = torch.zeros(5, 1, 4, 4)
    a = sample_draws(_Echo(), cond, 1, 6, 3, 0.0, seed=1, batch_size=12)
    b = sample_draws(_Echo(), cond, 1, 6, 3, 0.0, seed=1, batch_size=12)
    assert a.shape == (6, 5, 1, 4, 4) and np.array_equal(a, b)
    assert not np.allclose(a[0], a[1])  # the draws differ
    assert len({float(v) for v in a[:, :, 0, 0, 0].ravel()}) == 30
