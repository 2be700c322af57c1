"""Realism stage: image statistics, the two-sample test's calibration, Galaxy Zoo DECaLS renders."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galmap.realism.c2st import c2st, ks_table
from galmap.realism.imagestats import STATISTICS, measure

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "gz_decals_rings_sample"
CLF = {"folds": 5, "max_iter": 100, "learning_rate": 0.1, "max_depth": 3, "min_samples_leaf": 10}


def _blob(n=424, sigma=20.0, noise=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    lum = 15 + 200 * np.exp(-0.5 * (x**2 + y**2) / sigma**2) + rng.normal(0, noise, (n, n))
    return np.clip(np.repeat(lum[..., None], 3, axis=-1), 0, 255).astype(np.uint8)


def test_measure_symmetric_blob():
    s = measure(_blob())
    assert set(s) == set(STATISTICS)
    assert s["asymmetry"] < 0.1
    assert 1.8 < s["concentration"] < 2.5  # a Gaussian: 2.15 untruncated, less inside the detection threshold
    assert abs(s["red_minus_blue"]) < 0.01
    assert s["n_other_sources"] == 0
    assert s["r50"] == pytest.approx(20 * 1.177 / 424, rel=0.3)


def test_c2st_calibration_on_tables():
    rng = np.random.default_rng(1)
    a = pd.DataFrame(rng.normal(size=(400, 3)), columns=list("xyz"))
    half = c2st(a.iloc[:200], a.iloc[200:], list("xyz"), CLF, seed=0)
    assert 0.35 < half["roc_auc"] < 0.65
    shifted = c2st(a.iloc[:200], a.iloc[200:] + 2.0, list("xyz"), CLF, seed=0)
    assert shifted["roc_auc"] > 0.95
    ks = ks_table(a.iloc[:200], a.iloc[200:] + 2.0, ["x"])
    assert ks["ks"].iloc[0] > 0.5
    with pytest.raises(ValueError, match="at least 5 rows"):
        c2st(a.iloc[:3], a, list("xyz"), CLF, seed=0)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="the shared Galaxy Zoo DECaLS sample is not here")
def test_c2st_on_real_images_halves_and_noise():
    """Two halves of the real images: AUC about 0.5; real vs pure noise: AUC about 1."""
    cat = pd.read_csv(SAMPLE / "catalog.csv")
    real = pd.DataFrame([measure(np.asarray(Image.open(SAMPLE / f).convert("RGB"))) for f in cat["file"]])
    rng = np.random.default_rng(3)
    noise = pd.DataFrame([measure(rng.normal(18, 8, (424, 424, 3)).clip(0, 255).astype(np.uint8)) for _ in range(60)])
    cols = list(STATISTICS)
    order = rng.permutation(len(real))
    halves = c2st(real.iloc[order[::2]], real.iloc[order[1::2]], cols, CLF, seed=0)
    assert 0.3 < halves["roc_auc"] < 0.7
    assert c2st(real, noise, cols, CLF, seed=0)["roc_auc"] > 0.95


def test_gz_decals_render_of_a_mock_galaxy(truth, surveys, test_config):
    """424x424 colour image at the Galaxy Zoo pixel scale, noise up to its corners (no padding)."""
    from galmap.realism.render import gz_decals_image

    survey = surveys["decals"]
    row = truth[truth["anomaly"] == "none"].iloc[0].to_dict()
    img, geo = gz_decals_image(row, survey, int(test_config["seed"]), survey.fov_arcsec)
    assert img.shape == (424, 424, 3) and img.dtype == np.uint8
    assert geo["pixscale_arcsec"] >= 0.1 and geo["r90_arcsec"] > geo["r50_arcsec"] > 0
    assert img[:40, :40].std() > 0.5  # sky noise in the corner, not a constant pad
    centre = img[200:224, 200:224].mean()
    assert centre > img[:40, :40].mean() + 20
