"""Quality guards on a full run's outputs: every learned stage against the mock's truth.

The test config's run is far too small for these stages (6 test galaxies per question,
1-2 epochs: classification and domain adaptation at or below chance, no flow closure
measured, Hα pixel correlation 0.01), and a dedicated sky big enough for them would not
fit the CI budget, so these guards read the outputs of a run of the default config (or
the second sky, ``--config seed=2027``), given by ``GALMAP_RUN`` (a directory holding
``results/``, or the ``results/`` folder); without it they skip::

    GALMAP_RUN=. pytest tests/quality/test_run.py          # after `snakemake --cores all`
    GALMAP_RUN=runs/seed2027 pytest tests/quality/test_run.py

Each guard recomputes its metric from the per-galaxy outputs and the truth
(``catalog/truth.parquet``, the held-out labels, the Euclid image's own Sérsic Re), not from
the stage's ``metrics.csv``, and checks that the same metric of a broken stage (shuffled
predictions, the same model twice) falls on the wrong side of the floor. Floors: the default
sky's values as measured in the docs (the stage pages), with the stated margin.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from galmap.core.stats import balanced_accuracy

pytestmark = pytest.mark.slow

RNG_SEED = 0


@pytest.fixture(scope="module")
def results() -> Path:
    run = os.environ.get("GALMAP_RUN")
    if not run:
        pytest.skip("GALMAP_RUN is not set: these guards read a full run's outputs (see the module docstring)")
    path = Path(run)
    path = path / "results" if (path / "results").is_dir() else path
    if not (path / "catalog/truth.parquet").exists():
        pytest.skip(f"{path} holds no mock run (no catalog/truth.parquet): the guards need the mock's truth")
    return path


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not in this run")
    return path


@pytest.fixture(scope="module")
def truth(results) -> pd.DataFrame:
    return pd.read_parquet(results / "catalog/truth.parquet").set_index("id")


def _shuffled(values) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).permutation(np.asarray(values))


# Questions where the default run's forest and CNN are clearly above chance (docs/classify.md);
# the arm and bar questions are near chance for the forest and are not guarded.
GUARDED_QUESTIONS = ["how-rounded", "disk-edge-on", "bulge-size", "merging"]


def _margin_over_chance(preds: pd.DataFrame, targets: pd.DataFrame) -> float:
    """Mean over :data:`GUARDED_QUESTIONS` of the test balanced accuracy minus chance (1 / the number of classes
    present: what answering one class always scores), against the labels of ``targets``."""
    margins = []
    for q in GUARDED_QUESTIONS:
        t = targets[targets["question"] == q].set_index("id")
        test = preds[(preds["question"] == q) & (preds["split"] == "test")]
        true = t.loc[test["id"], "class"].to_numpy()
        margins.append(balanced_accuracy(true, test["pred_class"].to_numpy()) - 1.0 / len(np.unique(true)))
    return float(np.mean(margins))


@pytest.mark.parametrize(
    ("model", "floor", "measured"),
    [("rf_latent", 0.15, 0.280), ("cnn_image", 0.22, 0.377)],
)
def test_classifiers_beat_chance(results, model, floor, measured):
    """Balanced accuracy above chance, averaged over four questions (the classification stage answers for balanced
    accuracy, ``classify.decision: balanced``; default sky: forest +28.0 points, CNN +37.7; floors
    +15 and +22 points). Broken: the predictions shuffled among the test galaxies of each
    question score about chance (forest +2.1 points, CNN +0.8)."""
    targets = pd.read_parquet(_need(results / "classify/targets.parquet"))
    preds = pd.read_parquet(_need(results / f"classify/{model}/predictions.parquet"))
    margin = _margin_over_chance(preds, targets)
    assert margin > floor, f"{model}: {margin:+.3f} over chance <= {floor:+.3f} (measured {measured:+.3f})"
    broken = preds.copy()
    for q in GUARDED_QUESTIONS:
        sel = (broken["question"] == q) & (broken["split"] == "test")
        broken.loc[sel, "pred_class"] = _shuffled(broken.loc[sel, "pred_class"])
    assert _margin_over_chance(broken, targets) < floor


def test_outlier_roc_area(results, truth):
    """ROC area of the outlier score against the truth's injected anomalies (scikit-learn's, from
    ``outliers.parquet``): default sky 0.927; floor 0.85. Broken: shuffled scores, about 0.5."""
    from sklearn.metrics import roc_auc_score

    out = pd.read_parquet(_need(results / "outliers/outliers.parquet"))
    is_anomaly = truth.loc[out["id"], "anomaly"].to_numpy() != "none"
    scores = out["outlier_score"].fillna(out["outlier_score"].min() - 1).to_numpy()
    floor = 0.85
    auc = roc_auc_score(is_anomaly, scores)
    assert auc > floor, f"outlier ROC area {auc:.3f} <= {floor} (measured 0.927)"
    assert roc_auc_score(is_anomaly, _shuffled(scores)) < floor


def test_anomaly_search_discovery_roc_area(results, truth):
    """ROC area of the anomaly search's ``discovery_score`` (``outliers/ranking.parquet``): lens arcs
    and irregulars against normal galaxies (artefacts left out): default sky 0.963; floor 0.90.
    Broken: shuffled scores, about 0.5. Also: ``is_artefact`` flags at most 3 % of the non-artefacts
    (measured 1.3 %) and more than a third of the injected artefacts (measured 0.67)."""
    from sklearn.metrics import roc_auc_score

    from galmap.mock.anomalies import ASTROPHYSICAL, INSTRUMENTAL

    out = pd.read_parquet(_need(results / "outliers/ranking.parquet"))
    kind = truth.loc[out["id"], "anomaly"].to_numpy()
    keep = kind == "none"
    keep |= np.isin(kind, ASTROPHYSICAL)
    scores = out["discovery_score"].fillna(out["discovery_score"].min() - 1).to_numpy()[keep]
    astro = np.isin(kind[keep], ASTROPHYSICAL)
    floor = 0.90
    auc = roc_auc_score(astro, scores)
    assert auc > floor, f"discovery ROC area {auc:.3f} <= {floor} (measured 0.963)"
    assert roc_auc_score(astro, _shuffled(scores)) < floor
    art = np.isin(kind, INSTRUMENTAL)
    flag = out["is_artefact"].to_numpy(bool)
    assert flag[~art].mean() < 0.03 and flag[art].mean() > 1 / 3, (flag[~art].mean(), flag[art].mean())


def _median_spearman(closure: pd.DataFrame) -> float:
    rs = []
    for _, grp in closure.groupby("parameter", sort=False):
        ok = np.isfinite(grp["requested"]) & np.isfinite(grp["measured"])
        rs.append(stats.spearmanr(grp.loc[ok, "requested"], grp.loc[ok, "measured"]).statistic)
    return float(np.median(rs))


def test_flow_closure(results):
    """Median over the parameters of the Spearman r between requested parameters and those measured on the
    generated images (sampled latents, recomputed from ``closure.csv``): default sky 0.774; floor 0.65.
    Broken: the measured values shuffled within each parameter, about 0."""
    closure = pd.read_csv(_need(results / "flow/closure.csv"))
    closure = closure[closure["latent"] == "sampled"]
    floor = 0.65
    r = _median_spearman(closure)
    assert r > floor, f"flow closure median Spearman r {r:.3f} <= {floor} (measured 0.774)"
    broken = closure.copy()
    broken["measured"] = broken.groupby("parameter")["measured"].transform(lambda v: _shuffled(v))
    assert _median_spearman(broken) < floor


def _target_accuracy(preds: pd.DataFrame, method: str) -> pd.Series:
    test = preds[(preds["method"] == method) & (preds["domain"] == "target") & (preds["split"] == "test")]
    return (test["pred_class"] == test["true_class"]).groupby(test["question"]).mean()


@pytest.mark.parametrize(
    ("pair", "floor"),
    [
        # with the mock's survey systematics (north coadds, filter terms, per-galaxy PSFs) the BASS/MzLS drop is
        # 1.1 ± 1.0 points on the default sky, not significant: nothing to recover, so the guard is that
        # adaptation costs no accuracy (measured +0.2 points; floor -1.0)
        ("bass_mzls", -0.01),
        # SDSS: drop 2.9 ± 1.0 points; distillation gains +2.7 (floor +1.0)
        ("sdss", 0.01),
    ],
)
def test_domain_adaptation_beats_source_only(results, pair, floor):
    """On each shifted survey (the pairs of domain.pairs), distillation's test accuracy minus the source-only
    CNN's, mean over the questions, above the pair's floor (measured on the default sky with the survey
    systematics; the values beside the parameters). Broken: distillation's predictions shuffled are far below."""
    preds = pd.read_parquet(_need(results / f"domain/{pair}/predictions.parquet"))
    targets = pd.read_parquet(_need(results / "classify/targets.parquet")).set_index(["id", "question"])
    test = preds[preds["split"] == "test"]
    # the labels the predictions are scored against are the classification targets' (the truth's votes)
    keys = list(zip(test["id"], test["question"], strict=True))
    assert (test["true_class"].to_numpy() == targets.loc[keys, "class"].to_numpy()).all()
    base = _target_accuracy(preds, "source_only")
    gain = float((_target_accuracy(preds, "distill") - base).mean())
    assert gain > floor, f"{pair}: distillation gains {gain:+.3f} over source_only on the target <= {floor}"
    broken = preds.copy()
    sel = (broken["method"] == "distill") & (broken["domain"] == "target") & (broken["split"] == "test")
    broken.loc[sel, "pred_class"] = _shuffled(broken.loc[sel, "pred_class"])
    assert float((_target_accuracy(broken, "distill") - base).mean()) < floor


def _re_scatter(re: pd.DataFrame, column: str) -> float:
    """Robust scatter (1.4826 MAD, dex) of log10(Re / Re measured on the Euclid image)."""
    ratio = np.log10(re[column] / re["re_euclid_arcsec"]).to_numpy()
    return float(stats.median_abs_deviation(ratio[np.isfinite(ratio)], scale="normal"))


def test_superres_beats_bicubic(results):
    """The regression U-Net against bicubic upsampling on the held-out galaxies (``re_compare.parquet``):
    Re scatter against the Euclid image's own Re, default sky 0.050 dex (bicubic 0.098), ceiling 0.075;
    median per-galaxy PSNR gain over bicubic, default sky 9.4 dB, floor 4 dB. Broken: the network's Re
    shuffled among galaxies scatters 0.32 dex, bicubic against itself gains 0 dB. (The Sérsic base alone
    scatters 0.034 dex in Re: the Re part would not catch a network that adds nothing to the base; the
    PSNR part is the one that would, but the base's PSNR is not in the stage's outputs.)"""
    re = pd.read_parquet(_need(results / "superres/re_compare.parquet"))
    ceiling, floor = 0.075, 4.0
    scatter = _re_scatter(re, "re_regression_arcsec")
    assert scatter < ceiling, f"regression Re scatter {scatter:.3f} dex >= {ceiling} (measured 0.050)"
    assert _re_scatter(re, "re_bicubic_arcsec") > scatter
    assert (
        _re_scatter(re.assign(re_regression_arcsec=_shuffled(re["re_regression_arcsec"])), "re_regression_arcsec")
        > ceiling
    )
    gain = float(np.nanmedian(re["psnr_regression_db"] - re["psnr_bicubic_db"]))
    assert gain > floor, f"regression PSNR gain over bicubic {gain:.1f} dB <= {floor} (measured 9.4)"
    assert float(np.nanmedian(re["psnr_bicubic_db"] - re["psnr_bicubic_db"])) < floor


def _flux_scatter(pred: pd.DataFrame, truth: pd.DataFrame, flux_pred) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):  # galaxies without Hα (or predicted without) drop out
        ratio = np.log10(np.asarray(flux_pred, float) / truth.loc[pred["id"], "flux_Ha"].to_numpy())
    return float(stats.median_abs_deviation(ratio[np.isfinite(ratio)], scale="normal"))


def test_halpha_pixels_and_flux(results, truth):
    """Hα predicted from u, g, r, i, z on held-out galaxies: median per-galaxy pixel correlation with the
    observed Hα map over the galaxies whose Hα is detectable (the stage's ``detectable``; elsewhere the map is
    noise), default sky 0.941 (0.975 before the documented sizes of issue 27 spread the light over more,
    noisier pixels), floor 0.88; total flux against the truth's ``flux_Ha``, robust scatter default sky
    0.148 dex, ceiling 0.20. Broken: the predicted fluxes shuffled among galaxies scatter far above the
    ceiling. (The pixel correlation is the stage's own per-galaxy number against the observed map; a broken
    network was not measured for it.)"""
    pred = pd.read_parquet(_need(results / "halpha/predictions.parquet"))
    floor, ceiling = 0.88, 0.20
    corr = float(np.nanmedian(pred.loc[pred["detectable"], "pixel_corr"]))
    assert corr > floor, f"Hα median pixel correlation (detectable) {corr:.3f} <= {floor} (measured 0.941)"
    scatter = _flux_scatter(pred, truth, pred["flux_pred"])
    assert scatter < ceiling, f"Hα flux scatter {scatter:.3f} dex >= {ceiling} (measured 0.148)"
    assert _flux_scatter(pred, truth, _shuffled(pred["flux_pred"])) > ceiling
