"""What the latents keep: the morphology-aware reconstruction metrics and the latent probes, on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.latent.morphmetrics import galaxy_metrics, render_noiseless
from galmap.latent.probes import Quantity, ceiling_targets, probe_scores
from galmap.nn.imagemetrics import ellipse_of, fourier_amplitudes, fourier_annuli


@pytest.fixture(scope="module")
def spiral_pair(truth, test_config):
    """A face-on two-armed spiral (no bar, clumps, companion, neighbours) and the same galaxy without its arms,
    drawn noiselessly by the mock in DECaLS."""
    spirals = truth[(truth["type"] == "spiral") & (truth["bulge_frac"] > 0)]
    row = spirals.sort_values("mag_r_nominal").iloc[0].to_dict()  # the brightest: its arms well above the noise
    row |= {
        "inclination_deg": 15.0, "disk_q": float(np.cos(np.radians(15.0))), "disk_h_arcsec": 2.0,
        "disk_re_arcsec": 2.0 * 1.678, "bulge_frac": 0.1, "bar_frac": 0.0, "clump_frac": 0.0, "n_clumps": 0,
        "arm_count": 2, "arm_frac": 0.35, "arm_pitch_deg": 20.0, "disk_frac": 0.55, "merger_state": "none",
        "n_neighbours": 0, "anomaly": "none", "dx_arcsec": 0.0, "dy_arcsec": 0.0,
    }  # fmt: skip
    both = pd.DataFrame([row, row | {"id": "no-arms", "arm_frac": 0.0, "disk_frac": 0.9}])
    shard = render_noiseless(both, test_config, "decals")
    assert np.isfinite(shard.images).all()
    return shard


def test_fourier_measure_is_zero_for_an_axisymmetric_disk_and_sees_arms():
    y, x = np.mgrid[:64, :64] - 31.6
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    disk = np.exp(-r / 5)
    arms = disk * ((1 + np.cos(2 * theta - 2 * np.log(r + 1e-3) / np.tan(0.4))) / 2) ** 3
    seg = r < 20
    amp = {}
    for name, im in (("disk", disk), ("spiral", disk + 0.5 * arms)):
        a, w = fourier_annuli(im, seg, ellipse_of(im, seg))
        amp[name] = fourier_amplitudes(a, w)
    assert (amp["disk"] < 0.005).all()
    assert amp["spiral"][1] > 0.05 and amp["spiral"][1] > 3 * amp["spiral"][[0, 2]].max()


def test_metric_scores_a_reconstruction_without_arms_lower(spiral_pair):
    """Recon = the noiseless spiral itself, or the same galaxy without arms, against the noisy spiral."""
    clean, noarm = spiral_pair.images[0], spiral_pair.images[1]
    sky = np.asarray(spiral_pair.attrs["sky_sigma"], np.float32)[:, None, None]
    noisy = clean + np.random.default_rng(0).normal(0, 1, clean.shape).astype(np.float32) * sky
    segment = clean[1] > 3 * sky[1]
    valid = np.ones(clean.shape, bool)
    band = spiral_pair.attrs["bands"].index("r")
    good = galaxy_metrics(noisy, clean, segment, valid, clean, band, 0.02)
    bad = galaxy_metrics(noisy, noarm, segment, valid, clean, band, 0.02)
    assert good["A2_ref"] > 0.05  # the arms are resolved
    assert good["A2_ratio"] == pytest.approx(1.0, abs=0.01) and good["res_m2"] < 0.01
    assert bad["A2_ratio"] < 0.5 and bad["res_m2"] > 0.6
    assert bad["ssim_clean"] < good["ssim_clean"] - 0.05
    assert bad["ssim_seg"] < good["ssim_seg"]


def _synthetic(n=400, seed=0):
    rng = np.random.default_rng(seed)
    has = rng.uniform(size=n) < 0.5
    strength = np.where(has, rng.uniform(0.1, 0.4, n), 0.0)
    kind = np.where(rng.uniform(size=n) < 0.7, "disk", "elliptical")
    ids = [f"g{i}" for i in range(n)]
    truth = pd.DataFrame({"id": ids, "type": kind, "bar_frac": np.where(kind == "disk", strength, 0.0),
                          "bar_class": np.where(has, "yes", "no")})  # fmt: skip
    z = rng.normal(size=(n, 6))
    z[:, 2] += 8 * truth["bar_frac"].to_numpy()  # the feature lives in one latent
    lat = pd.DataFrame(z, columns=[f"mu_{i}" for i in range(6)])
    lat.insert(0, "id", ids)
    lat.insert(1, "split", np.where(np.arange(n) % 5 == 0, "test", "train"))
    return truth, lat


def test_probe_recovers_a_present_absent_feature_from_latents():
    truth, lat = _synthetic()
    specs = [
        Quantity("bar_frac", "disks", "type == 'disk'", "regression"),
        Quantity("bar_class", "disks", "type == 'disk'", "class"),
    ]
    params = {"n_estimators": 100, "min_samples_leaf": 3}
    cols = [f"mu_{i}" for i in range(6)]
    got = probe_scores(lat, cols, truth, specs, params, seed=1).set_index("quantity")
    assert got.loc["bar_frac", "score"] > 0.6 and got.loc["bar_class", "score"] > 0.85
    assert got.loc["bar_frac", "n_test"] == ((lat["split"] == "test") & (truth["type"] == "disk")).sum()
    blind = lat.copy()
    blind["mu_2"] = np.random.default_rng(5).normal(size=len(blind))  # the feature's latent lost
    lost = probe_scores(blind, cols, truth, specs, params, seed=1).set_index("quantity")
    assert lost.loc["bar_frac", "score"] < 0.2 and lost.loc["bar_class", "score"] < 0.7
    again = probe_scores(lat, cols, truth, specs, params, seed=1).set_index("quantity")
    assert again["score"].equals(got["score"])  # seeded


def test_ceiling_targets_bins_from_the_train_split():
    truth, lat = _synthetic()
    split = lat.set_index("id")["split"]
    specs = [Quantity("bar_frac", "disks", "type == 'disk'", "regression"), Quantity("bar_class", "all", None, "class")]
    targets, n_classes = ceiling_targets(truth, split, specs, 4)
    assert n_classes[1] == 2 and 2 <= n_classes[0] <= 4
    bar = targets[targets["question"] == "bar_frac"]
    assert len(bar) == (truth["type"] == "disk").sum()  # only the population carries the head's labels
    assert set(bar["class"]) <= set(range(n_classes[0]))
    assert set(targets["split"]) == {"train", "test"}
