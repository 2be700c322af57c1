"""benchmarks/headline.py on the test config's run: every headline table, two runs side by side."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from galmap.core.galaxyzoo import QUESTIONS
from tests.conftest import REPO


def _headline():
    spec = importlib.util.spec_from_file_location("headline", REPO / "benchmarks" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_headline_tables_of_two_runs(local_run, tmp_path):
    headline = _headline()
    out = tmp_path / "results.md"
    headline.main([str(local_run), str(local_run / "results"), "--names", "one", "two", "--write", str(out)])
    text = out.read_text()
    for title in headline.TABLES:
        assert f"## {title}" in text
    # the realism stage runs only where the shared real images are found from the working directory
    has_realism = (local_run / "results/realism/c2st.csv").exists()
    assert text.count("(not in these runs)") == (0 if has_realism else 1)
    if has_realism:
        c2st = pd.read_csv(local_run / "results/realism/c2st.csv").query("statistic == 'classifier'")
        line = next(row for row in text.splitlines() if row.startswith("| C2ST ROC AUC, all real |"))
        assert f"{c2st.set_index('comparison').loc['all_real', 'roc_auc']:.3g}" in line
    table = headline.side_by_side([headline.classification(local_run / "results")] * 2, ["one", "two"])
    assert list(table.index) == [q.name for q in QUESTIONS]
    metrics = pd.read_csv(local_run / "results/classify/metrics.csv").set_index(["question", "model"])
    for q in table.index:  # the numbers are the metrics table's, under each run's name
        assert table.loc[q, "rf_latent accuracy [one]"] == metrics.loc[(q, "rf_latent"), "accuracy"]
        assert table.loc[q, "cnn_image accuracy [two]"] == metrics.loc[(q, "cnn_image"), "accuracy"]
        assert table.loc[q, "rf_latent balanced accuracy [one]"] == metrics.loc[(q, "rf_latent"), "balanced_accuracy"]
    comp = pd.read_csv(local_run / "results/classify/comparison.csv").query("metric == 'balanced_accuracy'")
    summary = headline.forest_vs_cnn([local_run / "results"] * 2, ["one", "two"])
    for q, diff in zip(comp["question"], comp["difference"], strict=True):
        assert summary.loc[q, "CNN − forest [one]"] == diff == summary.loc[q, "mean over the runs"]
    assert f"## {headline.FOREST_VS_CNN}" in text
    sr = pd.read_csv(local_run / "results/superres/metrics.csv").set_index("method")
    line = next(row for row in text.splitlines() if row.startswith("| regression |"))
    assert f"{sr.loc['regression', 'psnr_db']:.3g}" in line


def test_domain_worst_question_says_whether_the_best_method_makes_a_question_worse(tmp_path):
    """Met when no question's 68 % interval of the best method's change lies wholly below 0; the worst one reported."""
    headline = _headline()
    (tmp_path / "domain").mkdir()
    rows = [  # pair, question, method, change, change_lo, change_hi
        ("a", "bar", "dann", -0.02, -0.04, 0.01), ("a", "merging", "dann", 0.01, 0.0, 0.02),
        ("a", "bar", "distill", -0.05, -0.07, -0.03), ("b", "bar", "distill", -0.05, -0.07, -0.03),
        ("b", "merging", "distill", 0.03, 0.01, 0.05), ("b", "mean", "distill", -0.01, -0.02, 0.0),
    ]  # fmt: skip
    metrics = pd.DataFrame(rows, columns=["pair", "question", "method", "change", "change_lo", "change_hi"])
    metrics.assign(domain="target").to_csv(tmp_path / "domain/metrics.csv", index=False)
    pd.DataFrame({"pair": ["a", "b"], "question": "mean", "method": ["dann", "distill"]}).to_csv(
        tmp_path / "domain/summary.csv", index=False
    )
    t = headline.domain_worst_question(tmp_path)
    assert t.loc["a", "best method"] == "dann" and t.loc["a", "worst question"] == "bar" and t.loc["a", "met"]
    assert t.loc["a", "its change (points) [68 %]"] == "-2.0 [-4.0, +1.0]"
    assert t.loc["b", "worst question"] == "bar" and not t.loc["b", "met"]  # not the mean over questions
    assert t.loc["b", "worse beyond the interval"] == "bar"
