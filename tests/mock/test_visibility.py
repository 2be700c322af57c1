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
    t["snr_featured"] = np.where(t["true_smooth-or-featured"] == "featured-or-disk", snr, 0.0)
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
    answered = faint["has-spiral-arms_no_fraction"][has_arms].dropna()  # NaN: no volunteer reached the question
    assert len(answered) >= 50
    assert (answered > 0.8).mean() >= 0.8
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


def _root(truth: pd.DataFrame, decals, perception=PERCEPTION) -> np.ndarray:
    """One volunteer's smooth / featured-or-disk / artifact probabilities (N, 3)."""
    return answer_probabilities(truth, decals, perception)["smooth-or-featured"]


def test_smooth_or_featured_follows_visible_disk_structure(population, surveys):
    """Featured galaxies whose disk structure is far above the threshold are called featured; far below it
    they are called smooth, exactly as a smooth galaxy of the same clarity is (the fallback); smooth galaxies
    are unchanged; the first question's own threshold is the one used."""
    decals = surveys["decals"]
    featured = (population["true_smooth-or-featured"] == "featured-or-disk").to_numpy()
    assert featured.sum() >= 50 and (~featured).sum() >= 20
    bright = _root(_with_snr(population, 16.0 * 8), decals)[featured]
    # (the mean share stays below 1: the clarity of faint galaxies sends some votes to the unclear answers)
    assert np.mean(bright[:, 1] > bright[:, 0]) >= 0.8 and bright[:, 1].mean() > 0.5
    unseen = _root(_with_snr(population, 16.0 / 64), decals)[featured]
    assert np.mean(unseen[:, 0] > 0.5) >= 0.8 and unseen[:, 1].mean() < 0.2
    # the fallback: answered as a smooth galaxy with the same clarity (same flux and size) would be
    as_smooth = _with_snr(population, 16.0 / 64).assign(type="elliptical")
    np.testing.assert_allclose(unseen, _root(as_smooth, decals)[featured], atol=1e-6)
    # galaxies that are smooth answer as without perception
    t = _with_snr(population, 100.0)
    np.testing.assert_allclose(_root(t, decals)[~featured], _root(t, decals, None)[~featured])
    # the first question has its own threshold when given: S = 128 is far below 128 x 8
    own = _root(_with_snr(population, 16.0 * 8), decals, PERCEPTION | {"featured_snr_threshold": 16.0 * 64})
    assert own[featured][:, 0].mean() > 0.6


def test_featured_snr_of_rendered_galaxies(truth, surveys, test_config):
    """A featureless elliptical has no disk structure (snr_featured 0, visible "smooth"); a bright spiral's arms
    make it featured; an edge-on disk's thinness counts, a rounder disk's does not."""
    from galmap.mock.render import GalaxyModel

    t = pd.concat([truth, true_answers(truth)], axis=1)
    normal = t[t["anomaly"] == "none"]
    decals = surveys["decals"]
    seed = int(test_config["seed"])

    def snr(row):
        return galaxy_feature_snr(GalaxyModel(row, seed, decals.fov_arcsec), decals)

    ell = normal[normal["type"] == "elliptical"].iloc[0].to_dict()
    s_ell = snr(ell)
    assert s_ell["snr_featured"] == 0 and s_ell["snr_thin_disk"] == 0
    spiral = normal[normal["type"] == "spiral"].iloc[0].to_dict()
    spiral |= {"mag_r_nominal": 14.5, "arm_frac": 0.35, "inclination_deg": 20.0, "disk_q": 0.94}
    s_sp = snr(spiral)
    assert s_sp["snr_featured"] > 8 * 16.0 and s_sp["snr_featured"] >= 0.8 * s_sp["snr_arms"]
    rows = pd.DataFrame([ell | s_ell, spiral | s_sp])
    vis = visible_answers(rows, 16.0)["visible_smooth-or-featured"].tolist()
    assert vis == ["smooth", "featured-or-disk"]
    assert visible_answers(rows, 16.0, s_sp["snr_featured"] * 2)["visible_smooth-or-featured"].tolist() == [
        "smooth",
        "smooth",
    ]
    # a bare disk (no bar, arms, clumps): only its thinness can show it is a disk
    bare = spiral | {"arm_frac": 0.0, "bar_frac": 0.0, "clump_frac": 0.0, "n_clumps": 0}
    edge_on = snr(bare | {"inclination_deg": 88.0, "disk_q": 0.125})
    rounder = snr(bare | {"inclination_deg": 60.0, "disk_q": 0.51})
    assert edge_on["snr_thin_disk"] > 16.0 and edge_on["snr_featured"] == pytest.approx(edge_on["snr_thin_disk"])
    assert rounder["snr_thin_disk"] == 0 and rounder["snr_featured"] == pytest.approx(0, abs=1e-6)


def test_label_job_passes_the_first_questions_threshold(population, surveys, default_config, tmp_path):
    """Rule mock_labels' job reads mock.visibility.featured_snr_threshold: a higher one, more smooth votes."""
    from galmap.core.io import read_table, write_table
    from galmap.mock.jobs import make_mock_labels

    write_table(tmp_path / "truth.parquet", _with_snr(population, 50.0))
    vol = default_config["mock"]["volunteers"]
    smooth = []
    for thr in (16.0, 400.0):
        out = tmp_path / f"labels-{thr}.parquet"
        vis = {"snr_threshold": 16.0, "featured_snr_threshold": thr}
        make_mock_labels(1, vol, {"decals": default_config["surveys"]["decals"]}, tmp_path / "truth.parquet",
                         out, tmp_path / "counts.csv", vis)  # fmt: skip
        smooth.append(read_table(out)["smooth-or-featured_smooth_fraction"].mean())
    assert smooth[1] > smooth[0] + 0.2


_FIRST = "smooth-or-featured"


def test_first_question_errors_follow_their_parameters(population, surveys):
    """The first question's volunteer errors (``first_question``): a clear smooth galaxy is called smooth with
    probability ceiling + (1 - ceiling) x its confused share (half uniform, half the unclear answers); a lower
    ceiling makes its votes less unanimous; the other questions do not change; a malformed setting is refused."""
    from galmap.mock.volunteers import FIRST_QUESTION, clarity

    decals = surveys["decals"]
    smooth = (population["true_smooth-or-featured"] == "smooth").to_numpy()
    first = {"ceiling": 0.8, "unclear": [0.6, 0.1, 0.3]}
    probs = answer_probabilities(population, decals, None, first)
    c = clarity(population, decals, 0.8)[smooth]
    expected = c[:, None] * np.array([1.0, 0, 0]) + (1 - c[:, None]) * (0.5 / 3 + 0.5 * np.array(first["unclear"]))
    np.testing.assert_allclose(probs["smooth-or-featured"][smooth], expected, atol=1e-12)
    assert c.max() <= 0.8 and c.max() > 0.7  # the clearest reach the ceiling
    looser = answer_probabilities(population, decals, None, {"ceiling": 0.97, "unclear": [0.75, 0.23, 0.02]})
    assert looser["smooth-or-featured"][smooth, 0].max() > probs["smooth-or-featured"][smooth, 0].max() + 0.05
    assert probs["smooth-or-featured"][smooth, 2].mean() > 2 * looser["smooth-or-featured"][smooth, 2].mean()
    for q in ("how-rounded", "bar", "merging"):
        np.testing.assert_array_equal(probs[q], looser[q])
    default = answer_probabilities(population, decals)["smooth-or-featured"]
    np.testing.assert_array_equal(default, answer_probabilities(population, decals, None, FIRST_QUESTION)[_FIRST])
    with pytest.raises(ValueError, match="first_question"):
        answer_probabilities(population, decals, None, {"ceiling": 1.5})
    with pytest.raises(ValueError, match="first_question"):
        answer_probabilities(population, decals, None, {"unclear": [0.5, 0.5]})
    with pytest.raises(ValueError, match="first_question"):
        answer_probabilities(population, decals, None, {"unclear": [0, 0, 0]})


def test_config_first_question_is_the_module_default(default_config):
    """The config's first-question errors are the documented ones (galmap.mock.volunteers.FIRST_QUESTION)."""
    from galmap.mock.volunteers import FIRST_QUESTION

    assert default_config["mock"]["volunteers"]["first_question"] == FIRST_QUESTION
