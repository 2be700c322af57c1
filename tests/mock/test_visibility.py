"""Perceptual volunteers: a feature's visibility in the image decides whether volunteers see it."""

import numpy as np
import pandas as pd
import pytest

from galmap.core.galaxyzoo import QUESTION_BY_NAME
from galmap.mock.population import draw_population, true_answers
from galmap.mock.visibility import FEATURE_SNR, galaxy_feature_snr, visible_answers
from galmap.mock.volunteers import answer_probabilities, make_labels

PERCEPTION = {"snr_threshold": 16.0, "scatter_dex": 0.2}


@pytest.fixture(scope="module")
def population(default_config):
    cfg = dict(default_config) | {"mock": dict(default_config["mock"]) | {"n_galaxies": 400}}
    truth = draw_population(cfg)
    return pd.concat([truth, true_answers(truth)], axis=1)


def _with_snr(truth: pd.DataFrame, snr: float) -> pd.DataFrame:
    """Every present feature at S/N ``snr`` (absent ones 0)."""
    t = truth.copy()
    t["snr_bar"] = np.where(t["bar_frac"] > 0, snr, 0.0)
    t["snr_arms"] = np.where(t["arm_frac"] > 0, snr * np.sqrt(np.maximum(t["arm_count"], 1)), 0.0)
    t["snr_merger"] = np.where(t["merger_state"] != "none", snr, 0.0)
    return t


@pytest.mark.parametrize(("question", "no"), [("bar", "no"), ("has-spiral-arms", "no"), ("merging", "none")])
def test_below_threshold_mostly_no_far_above_mostly_yes(population, surveys, question, no):
    present = {"bar": ["strong", "weak"], "has-spiral-arms": ["yes"], "merging": ["minor-disturbance",
               "major-disturbance", "merger"]}  # fmt: skip
    has = population[f"true_{question}"].isin(present[question])
    assert has.sum() >= 20
    j = QUESTION_BY_NAME[question].answers.index(no)
    decals = surveys["decals"]
    faint = answer_probabilities(_with_snr(population, 16.0 / 4), decals, PERCEPTION)[question][has.to_numpy(), j]
    bright = answer_probabilities(_with_snr(population, 16.0 * 8), decals, PERCEPTION)[question][has.to_numpy(), j]
    assert np.mean(faint > 0.5) >= 0.8 and faint.mean() > 0.9  # below the threshold: "no" (not seen)
    assert bright.mean() < 0.35  # far above: mostly seen (what remains is the clarity model's confusion)
    assert np.mean(bright < 0.5) >= 0.8


def test_absent_features_keep_false_positives_and_votes_follow(population, surveys):
    """Galaxies without a bar answer as without perception; the votes use the probabilities."""
    decals = surveys["decals"]
    t = _with_snr(population, 100.0)
    nobar = (population["true_bar"] == "no").to_numpy()
    with_p = answer_probabilities(t, decals, PERCEPTION)["bar"][nobar]
    without = answer_probabilities(t, decals, None)["bar"][nobar]
    np.testing.assert_allclose(with_p, without)
    faint = make_labels(_with_snr(population, 2.0), decals, 1, 38, PERCEPTION)
    has_arms = (population["true_has-spiral-arms"] == "yes").to_numpy()
    assert (faint["has-spiral-arms_no_fraction"][has_arms] > 0.8).mean() >= 0.8
    with pytest.raises(ValueError, match="snr_arms"):
        answer_probabilities(population, decals, PERCEPTION)


def test_feature_snr_of_rendered_components(truth, surveys, test_config):
    """S/N is 0 without the feature, grows with the galaxy's brightness, and sets the visible answers."""
    from galmap.mock.render import GalaxyModel

    t = pd.concat([truth, true_answers(truth)], axis=1)
    arms = t[(t["arm_frac"] > 0) & (t["anomaly"] == "none")].iloc[0].to_dict()
    decals = surveys["decals"]
    seed = int(test_config["seed"])
    snr = galaxy_feature_snr(GalaxyModel(arms, seed, decals.fov_arcsec), decals)
    brighter = galaxy_feature_snr(GalaxyModel(arms | {"mag_r_nominal": arms["mag_r_nominal"] - 2.5},
                                              seed, decals.fov_arcsec), decals)  # fmt: skip
    assert snr["snr_arms"] > 0 and brighter["snr_arms"] > 3 * snr["snr_arms"]
    if arms["bar_frac"] == 0:
        assert snr["snr_bar"] == 0
    row = pd.DataFrame([arms | snr])
    seen = visible_answers(row, snr["snr_arms"] / 2)
    hidden = visible_answers(row, snr["snr_arms"] * 2)
    assert set(seen.columns) == {f"visible_{q}" for q in FEATURE_SNR}
    assert seen["visible_has-spiral-arms"].iloc[0] == arms["true_has-spiral-arms"]
    if arms["true_has-spiral-arms"] == "yes":
        assert hidden["visible_has-spiral-arms"].iloc[0] == "no"
        assert hidden["visible_spiral-arm-count"].iloc[0] == ""


def test_feature_snr_over_processes_equals_one_process(truth, surveys, test_config):
    """Spreading the galaxies over worker processes changes nothing: each galaxy is drawn from its own seed."""
    from galmap.mock.visibility import feature_snr

    decals, seed = surveys["decals"], int(test_config["seed"])
    some = truth.iloc[:5]
    one = feature_snr(some, decals, seed, decals.fov_arcsec)
    two = feature_snr(some, decals, seed, decals.fov_arcsec, processes=2)
    pd.testing.assert_frame_equal(one, two)
    assert list(two.index) == list(some.index)
