"""Classification targets, splits, the latent random forest, the image CNN and the metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.classify.targets import (
    TargetSpec,
    compare_models,
    decide,
    make_targets,
    question_classes,
    random_forest_predictions,
    score_predictions,
    stratified_split,
    target_specs,
)
from galmap.core.io import Shard, write_shard

PARAMS = {"min_votes": 10, "min_majority": 0.5, "val_fraction": 0.2, "test_fraction": 0.25}


def test_question_specs_from_the_config():
    specs = target_specs(
        [
            "bar",
            {"name": "ring", "column": "ring_flag", "classes": ["no", "yes"]},
            {"name": "spiky", "answers": {"yes": ["spiky_yes_fraction"], "no": ["spiky_no_fraction"]},
             "total_votes": "spiky_total-votes"},
        ]
    )  # fmt: skip
    assert [s.name for s in specs] == ["bar", "ring", "spiky"]
    assert specs[0].classes == ("strong", "weak", "no") and specs[0].total_votes == "bar_total-votes"
    assert specs[1].column == "ring_flag" and specs[2].answers == (("spiky_yes_fraction",), ("spiky_no_fraction",))
    with pytest.raises(ValueError, match="not a Galaxy Zoo DECaLS question"):
        target_specs(["barred"])
    with pytest.raises(ValueError, match="repeat"):
        target_specs(["bar", "bar"])


def test_votes_become_classes_only_with_enough_votes_and_a_majority():
    labels = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "bar_total-votes": [20, 4, 20, 20],
            "bar_strong_fraction": [0.7, 0.9, 0.4, 0.1],
            "bar_weak_fraction": [0.2, 0.1, 0.35, 0.2],
            "bar_no_fraction": [0.1, 0.0, 0.25, 0.7],
        }
    )
    cls, majority, votes, _ = question_classes(labels, target_specs(["bar"])[0], 10, 0.5)
    # b: too few votes; c: no class reaches half the votes
    assert list(cls) == [0, -1, -1, 2]
    assert majority[0] == pytest.approx(0.7) and list(votes) == [20, 4, 20, 20]


def test_a_class_column_question_such_as_a_ring_flag():
    labels = pd.DataFrame({"id": list("abcde"), "ring": ["yes", "no", "", None, "yes"], "code": [1, 0, -1, np.nan, 1]})
    cls, *_, spec = question_classes(labels, TargetSpec("ring", ("no", "yes"), column="ring"), 0, 0)
    assert list(cls) == [1, 0, -1, -1, 1] and spec.classes == ("no", "yes")
    cls, *_ = question_classes(labels, TargetSpec("ring", ("no", "yes"), column="code"), 0, 0)
    assert list(cls) == [1, 0, -1, -1, 1]
    with pytest.raises(ValueError, match="not in"):
        question_classes(labels, TargetSpec("ring", ("a", "b"), column="ring"), 0, 0)
    with pytest.raises(KeyError, match="no column 'nope'"):
        question_classes(labels, TargetSpec("ring", (), column="nope"), 0, 0)


def test_stratified_split_keeps_class_fractions_and_ignores_row_order():
    rng = np.random.default_rng(0)
    ids = np.array([f"g{i:04d}" for i in range(1000)], dtype=object)
    classes = rng.choice(3, 1000, p=[0.6, 0.3, 0.1])
    seed = np.random.SeedSequence(5)
    split = stratified_split(ids, classes, seed, 0.1, 0.2)
    for c in range(3):
        s = split[classes == c]
        assert abs((s == "test").mean() - 0.2) < 0.02 and abs((s == "val").mean() - 0.1) < 0.02
    perm = rng.permutation(1000)
    again = stratified_split(ids[perm], classes[perm], np.random.SeedSequence(5), 0.1, 0.2)
    assert (again == split[perm]).all()
    assert (stratified_split(ids, classes, np.random.SeedSequence(6), 0.1, 0.2) != split).any()


def _separable(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latents where class 1 sits 3 sigma away along one axis, and its ring/not-ring label table."""
    rng = np.random.default_rng(seed)
    ids = [f"g{i:04d}" for i in range(n)]
    y = rng.integers(0, 2, n)
    z = rng.normal(size=(n, 8))
    z[:, 3] += 3.0 * y
    latents = pd.DataFrame({"id": ids} | {f"mu_{k}": z[:, k] for k in range(8)})
    labels = pd.DataFrame({"id": ids, "ring_flag": y})
    return latents, labels


def test_random_forest_beats_chance_on_a_separable_label():
    latents, labels = _separable()
    targets, specs = make_targets(labels, target_specs([{"name": "ring", "column": "ring_flag"}]), PARAMS, 3)
    latents.loc[0, "mu_2"] = np.nan  # a galaxy without usable latents is reported, not dropped silently
    preds, failures = random_forest_predictions(targets, latents, {"n_estimators": 50, "min_samples_leaf": 1,
                                                                   "max_features": "sqrt"}, 3)  # fmt: skip
    assert failures == [("g0000", "classify (ring): non-finite latents")]
    metrics, confusion = score_predictions({"rf_latent": preds}, targets, {"ring": list(specs[0].classes)})
    row = metrics.iloc[0]
    assert row["accuracy"] > 0.9 > row["chance_accuracy"] + 0.2
    test_ids = set(targets.loc[targets["split"] == "test", "id"]) - {"g0000"}
    assert confusion["count"].sum() == row["n_test"] == len(test_ids)


def test_a_question_with_one_training_class_is_reported_not_dropped():
    latents, labels = _separable(40)
    labels["ring_flag"] = 1
    targets, _ = make_targets(labels, target_specs([{"name": "ring", "column": "ring_flag"}]), PARAMS, 3)
    preds, failures = random_forest_predictions(targets, latents, {"n_estimators": 5, "min_samples_leaf": 1,
                                                                   "max_features": "sqrt"}, 3)  # fmt: skip
    assert len(preds) == 0 and len(failures) == len(targets) == 40
    assert all("fewer than two classes" in why for _, why in failures)


def test_metrics_match_a_hand_computed_confusion():
    targets = pd.DataFrame({"id": list("abcdef"), "question": "q", "class": [0, 0, 0, 1, 1, 1], "split": ["test"] * 6})
    preds = targets.rename(columns={"class": "true_class"}).assign(pred_class=[0, 0, 1, 1, 1, 1], confidence=1.0)
    metrics, conf = score_predictions({"m": preds}, targets, {"q": ["x", "y"]})
    row = metrics.iloc[0]
    assert row["accuracy"] == pytest.approx(5 / 6)
    # class x: precision 1, recall 2/3; class y: precision 3/4, recall 1
    assert row["precision_macro"] == pytest.approx((1 + 0.75) / 2)
    assert row["recall_macro"] == pytest.approx((2 / 3 + 1) / 2)
    f1x, f1y = 2 * (2 / 3) / (1 + 2 / 3), 2 * 0.75 / 1.75
    assert row["f1_macro"] == pytest.approx((f1x + f1y) / 2) and row["f1_weighted"] == pytest.approx((f1x + f1y) / 2)
    cm = conf.set_index(["true_class", "pred_class"])["count"]
    assert cm[("x", "y")] == 1 and cm[("y", "y")] == 3 and cm[("y", "x")] == 0
    assert row["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2) and row["chance_balanced_accuracy"] == 0.5


def test_balanced_accuracy_does_not_reward_the_majority_answer():
    # 90 galaxies of class 0, 10 of class 1: answering 0 always is 90 % accurate but balanced 50 %
    n = 100
    targets = pd.DataFrame({"id": [f"g{i}" for i in range(n)], "question": "q", "class": [0] * 90 + [1] * 10,
                            "split": ["test"] * n})  # fmt: skip
    majority = targets.rename(columns={"class": "true_class"}).assign(pred_class=0, confidence=1.0)
    skilled = majority.assign(pred_class=[0] * 80 + [1] * 10 + [1] * 8 + [0] * 2)
    metrics, _ = score_predictions({"majority": majority, "skilled": skilled}, targets, {"q": ["no", "yes"]})
    m = metrics.set_index("model")
    assert m.loc["majority", "accuracy"] == pytest.approx(0.9) and m.loc["majority", "balanced_accuracy"] == 0.5
    assert m.loc["skilled", "accuracy"] < m.loc["majority", "accuracy"]
    assert m.loc["skilled", "balanced_accuracy"] == pytest.approx((80 / 90 + 8 / 10) / 2)


def test_the_balanced_decision_answers_the_rare_class_when_its_probability_beats_its_frequency():
    prior = np.array([0.9, 0.1])
    proba = np.array([[0.8, 0.2], [0.95, 0.05], [0.4, 0.6]])
    assert list(decide(proba, prior, "most_probable")) == [0, 0, 1]
    # 0.2 / 0.1 = 2 > 0.8 / 0.9: the rare class; 0.05 / 0.1 = 0.5 < 0.95 / 0.9: the common one
    assert list(decide(proba, prior, "balanced")) == [1, 0, 1]
    # a class never seen in training is never answered
    assert list(decide(np.array([[0.1, 0.0, 0.9]]), np.array([0.5, 0.5, 0.0]), "balanced")) == [0]
    with pytest.raises(ValueError, match="classify.decision"):
        decide(proba, prior, "vote")


def test_the_balanced_decision_raises_the_forests_balanced_accuracy_on_imbalanced_classes():
    # a weak feature and a 85/15 class split: the most probable answer is nearly always the majority
    rng = np.random.default_rng(3)
    n = 1200
    y = (rng.random(n) < 0.15).astype(np.int64)
    z = rng.normal(size=(n, 4)) + 0.8 * y[:, None]
    ids = [f"g{i}" for i in range(n)]
    targets = pd.DataFrame({"id": ids, "question": "q", "class": y, "split": np.where(np.arange(n) < 800, "train",
                                                                                           "test")})  # fmt: skip
    latents = pd.DataFrame({"id": ids} | {f"mu_{k}": z[:, k] for k in range(4)})
    params = {"n_estimators": 100, "min_samples_leaf": 5, "max_features": "sqrt"}
    scores = {}
    for rule in ("most_probable", "balanced"):
        preds, _ = random_forest_predictions(targets, latents, params, 7, 1, rule)
        metrics, _ = score_predictions({"rf": preds}, targets, {"q": ["no", "yes"]})
        scores[rule] = metrics.iloc[0]
    assert scores["balanced"]["balanced_accuracy"] > scores["most_probable"]["balanced_accuracy"] + 0.05
    assert scores["balanced"]["accuracy"] < scores["most_probable"]["accuracy"]


def test_paired_bootstrap_of_the_model_difference():
    rng = np.random.default_rng(0)
    n = 400
    true = rng.integers(0, 2, n)
    base = pd.DataFrame({"id": [f"g{i}" for i in range(n)], "question": "q", "split": "test", "true_class": true,
                         "confidence": 1.0})  # fmt: skip
    good = base.assign(pred_class=np.where(rng.random(n) < 0.9, true, 1 - true))  # ~90 % right
    poor = base.assign(pred_class=np.where(rng.random(n) < 0.7, true, 1 - true))  # ~70 % right
    comp = compare_models({"poor": poor, "good": good}, "poor", "good", seed=1).set_index("metric")
    row = comp.loc["balanced_accuracy"]
    assert row["value_b"] - row["value_a"] == pytest.approx(row["difference"])
    assert 0.12 < row["difference"] < 0.28 and row["difference_lo68"] < row["difference"] < row["difference_hi68"]
    # the 68 % interval of a difference of two ~n=400 proportions: about +-0.025 (binomial), not zero, not huge
    assert 0.01 < (row["difference_hi68"] - row["difference_lo68"]) / 2 < 0.05
    same = compare_models({"a": good, "b": good}, "a", "b", seed=1).set_index("metric")
    assert same.loc["accuracy", "difference"] == 0 and same.loc["accuracy", "difference_hi68"] == 0
    again = compare_models({"poor": poor, "good": good}, "poor", "good", seed=1)
    pd.testing.assert_frame_equal(again.set_index("metric"), comp)


def test_cnn_beats_chance_on_separable_images(tmp_path):
    """A multi-head CNN learns 'ring' vs 'blob' images, with a question that applies to half the galaxies."""
    from galmap.classify.cnn import predict, train_cnn

    rng = np.random.default_rng(1)
    n, size = 160, 24
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    ring, blob = np.exp(-0.5 * ((r - 7) / 1.2) ** 2), np.exp(-0.5 * (r / 2.5) ** 2)
    y = rng.integers(0, 2, n)
    images = np.where(y[:, None, None], ring, blob)[:, None] * 5.0 + rng.normal(0, 0.3, (n, 1, size, size))
    ids = np.array([f"g{i:04d}" for i in range(n)], dtype=object)
    attrs = {"survey": "toy", "bands": ["r"], "pixscale_arcsec": 0.262, "psf_fwhm_arcsec": [1.0],
             "norm_softening": [0.5]}  # fmt: skip
    paths = []
    for k in range(2):
        rows = slice(80 * k, 80 * (k + 1))
        paths.append(str(tmp_path / f"shard-{k}.h5"))
        write_shard(paths[-1], Shard(images[rows].astype(np.float32), np.full((80, 1, size, size), 11.0, np.float32),
                                     ids[rows], attrs))  # fmt: skip
    labels = pd.DataFrame({"id": ids, "ring": y, "half": np.where(np.arange(n) % 2 == 0, y, -1)})
    specs = target_specs([{"name": "ring", "column": "ring"}, {"name": "half", "column": "half"}])
    targets, specs = make_targets(labels, specs, PARAMS, 0)
    params = {"channels": [8, 16], "dropout": 0.1, "augment": True, "batch_size": 16, "max_epochs": 6,
              "patience": 6, "learning_rate": 0.01, "weight_decay": 0.0, "cache_mb": 100, "device": "cpu"}  # fmt: skip
    model, history, meta = train_cnn(paths, targets, ["ring", "half"], [2, 2], params, 0, progress=False)
    assert meta["questions"] == ["ring", "half"] and len(history) >= 1
    preds = predict(model, paths, targets, ["ring", "half"])
    assert len(preds) == len(targets)  # every used galaxy of every question, and only those
    assert set(preds.loc[preds["question"] == "half", "id"]) == set(ids[::2])
    metrics, _ = score_predictions({"cnn_image": preds}, targets, {s.name: list(s.classes) for s in specs})
    assert (metrics["accuracy"] > metrics["chance_accuracy"] + 0.2).all(), metrics
