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
    assert "(not in these runs)" not in text
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
