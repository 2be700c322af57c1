"""The anomaly search: relevance feedback, the labels file, the artefact flag, repeatability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.anomalies import active
from galmap.anomalies.jobs import rank_galaxies
from galmap.anomalies.scores import combine, unsupervised_scores

PARAMS = {
    "discovery_scores": ["recon_mean_sigma", "knn_sigma"],
    "artefact_scores": ["recon_excess_sigma"],
    "artefact_sigma": 5.7,
    "knn": 5,
    "trees": 50,
}


def _latents(n: int = 1000, k: int = 6, seed: int = 0) -> pd.DataFrame:
    """Gaussian latents and log-normal per-band chi2/nu (0.05 dex) of a population of normal galaxies."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"mu_{i}" for i in range(k)])
    table.insert(0, "id", [f"g{i}" for i in range(n)])
    per = 10 ** rng.normal(0.2, 0.05, (n, 3))
    for j, band in enumerate("grz"):
        table[f"chi2_nu_{band}"] = per[:, j]
    table["chi2_nu"] = per.mean(axis=1)
    return table


def test_relevance_feedback_moves_labelled_interesting_neighbours_up():
    """A tight group of galaxies with middling anomaly scores: labelling three of them interesting
    (and a few high scorers elsewhere boring) lifts the unlabelled rest of the group towards the top."""
    rng = np.random.default_rng(1)
    n = 500
    x = rng.normal(size=(n, 4))
    group = np.arange(20)
    x[group] = rng.normal(6.0, 0.2, (len(group), 4))  # a cluster of their own in feature space
    discovery = rng.normal(size=n)
    discovery[group] = 0.5  # middling: around rank 150 of 500 without feedback
    high = np.argsort(-discovery)[:10]
    labelled = {int(i): "boring" for i in high} | {int(i): "interesting" for i in group[:3]}
    before, _ = active.relevance(x, discovery, {}, seed=0)
    after, p = active.relevance(x, discovery, labelled, seed=0)
    rest = group[3:]
    rank_before = np.argsort(np.argsort(-before))[rest]
    rank_after = np.argsort(np.argsort(-after))[rest]
    assert np.median(rank_after) < np.median(rank_before) / 3
    assert (p[rest] > 0.5).all() and np.median(p[np.setdiff1d(np.arange(n), group)]) < 0.2
    # without the interesting labels the group does not move up
    boring_only, _ = active.relevance(x, discovery, {int(i): "boring" for i in high}, seed=0)
    assert np.median(np.argsort(np.argsort(-boring_only))[rest]) >= np.median(rank_before) - 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,label\ng1,interesting\ng999,boring\n", "line 3: unknown galaxy id 'g999'"),
        ("id,label\ng1,interesting\n# a comment\ng2,weird\n", "line 4: unknown label 'weird'"),
        ("id,label\ng1,interesting,extra\n", "line 2: expected 'id,label'"),
        ("galaxy,label\ng1,boring\n", "line 1: the header must be 'id,label'"),
        ("id,label\ng1,boring\ng1,artefact\n", "line 3: g1 is labelled again (first on line 2)"),
    ],
)
def test_a_malformed_labels_file_names_the_line(tmp_path, text, message):
    path = tmp_path / "outliers.labels"
    path.write_text(text)
    with pytest.raises(active.LabelsError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        active.read_labels(path, ["g1", "g2", "g3"])
    assert str(path) in str(err.value)


def test_labels_are_read(tmp_path):
    path = tmp_path / "outliers.labels"
    path.write_text("id,label\n g2 , Interesting\n\ng1,artefact\n")
    got = active.read_labels(path, ["g1", "g2"])
    assert got.to_dict("list") == {"id": ["g2", "g1"], "label": ["interesting", "artefact"]}


def test_the_artefact_flag_catches_one_band_trails_and_columns_not_extra_light_in_every_band():
    """A satellite trail (g) and a bad column (z) leave a residual in one band only: flagged. A lens
    arc's extra light, as large in every band, raises the discovery score and is not flagged."""
    table = _latents(n=2000, seed=4)
    trail, column, arc = 5, 6, 7
    table.loc[trail, "chi2_nu_g"] = 10 ** (0.2 + 12 * 0.05)
    table.loc[column, "chi2_nu_z"] = 10 ** (0.2 + 10 * 0.05)
    table.loc[arc, ["chi2_nu_g", "chi2_nu_r", "chi2_nu_z"]] = 10 ** (0.2 + 10 * 0.05)
    out = combine(unsupervised_scores(table, seed=0), PARAMS["discovery_scores"], PARAMS["artefact_scores"], 5.7)
    assert out.loc[trail, "is_artefact"] and out.loc[column, "is_artefact"]
    assert not out.loc[arc, "is_artefact"]
    assert out["is_artefact"].mean() < 0.01
    assert out.loc[arc, "discovery_score"] > np.nanquantile(out["discovery_score"], 0.99)


def test_the_same_inputs_and_labels_give_the_same_ranking(tmp_path):
    table = _latents(n=400, seed=2)
    labels = pd.DataFrame({"id": ["g3", "g10", "g11"], "label": ["interesting", "boring", "artefact"]})
    first = rank_galaxies(PARAMS, 7, table, None, labels)
    second = rank_galaxies(PARAMS, 7, table.copy(), None, labels.copy())
    pd.testing.assert_frame_equal(first, second)
    assert first["id"].head(3).tolist() == ["g3", "g10", "g11"]  # the labelled first, in file order
    assert first["rank"].tolist() == list(range(1, 401))


def test_the_validation_half_depends_on_the_ids_not_their_order():
    from galmap.anomalies.scores import validation_half

    ids = np.array([f"g{i:04d}" for i in range(101)])
    half = validation_half(ids, 42)
    shuffled = np.random.default_rng(0).permutation(len(ids))
    assert half.sum() == 50
    assert set(ids[half]) == set(ids[shuffled][validation_half(ids[shuffled], 42)])
