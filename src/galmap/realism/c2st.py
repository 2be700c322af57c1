"""Classifier two-sample test (C2ST) and per-statistic KS distances.

Lopez-Paz & Oquab (2017): if a classifier cannot tell two samples apart better
than chance on held-out data, they are indistinguishable in what it sees. Here a
gradient-boosting classifier with hyperparameters fixed in the config (not tuned
to the score) is cross-validated (stratified k folds, seeded) on a table of image
statistics; its out-of-fold predictions give the accuracy, the balanced accuracy
and the ROC AUC (0.5: indistinguishable, 1: perfectly separated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict


def c2st(a: pd.DataFrame, b: pd.DataFrame, columns: Sequence[str], params: Mapping[str, Any], seed: int) -> dict:
    """Cross-validated classifier telling rows of ``a`` (label 1) from ``b`` (label 0).

    ``params``: ``folds`` and the classifier's ``max_iter``, ``learning_rate``,
    ``max_depth``, ``min_samples_leaf`` (sklearn's HistGradientBoostingClassifier,
    which handles NaN statistics). Returns ``n_a, n_b, accuracy, balanced_accuracy, roc_auc``.
    """
    x = pd.concat([a[list(columns)], b[list(columns)]]).to_numpy(float)
    y = np.r_[np.ones(len(a), int), np.zeros(len(b), int)]
    folds = int(params["folds"])
    if min(len(a), len(b)) < folds:
        raise ValueError(f"the two-sample test needs at least {folds} rows per sample, got {len(a)} and {len(b)}")
    clf = HistGradientBoostingClassifier(
        max_iter=int(params["max_iter"]),
        learning_rate=float(params["learning_rate"]),
        max_depth=int(params["max_depth"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        early_stopping=False,
        random_state=seed,
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    pred = (proba >= 0.5).astype(int)
    return {
        "n_a": len(a),
        "n_b": len(b),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "roc_auc": float(roc_auc_score(y, proba)),
    }


def ks_table(a: pd.DataFrame, b: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per column: the two-sample KS distance and p-value, and each sample's median (NaNs dropped)."""
    rows = []
    for col in columns:
        x, y = a[col].dropna().to_numpy(float), b[col].dropna().to_numpy(float)
        if len(x) and len(y):
            res = ks_2samp(x, y)
            ks, p = float(res.statistic), float(res.pvalue)
        else:
            ks = p = float("nan")
        rows.append({"statistic": col, "ks": ks, "ks_pvalue": p, "median_a": float(np.median(x)) if len(x) else
                     float("nan"), "median_b": float(np.median(y)) if len(y) else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)
