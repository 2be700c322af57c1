"""Unsupervised anomaly scores, the artefact flag and the discovery score.

Every score is in sigmas of the population's own upper tail (:func:`galmap.latent.outliers.upper_z`,
the upper semi-MAD scale: for a Gaussian population the standard deviation):

* ``mahalanobis_sigma``, ``recon_sigma_<band>``, ``recon_sigma`` (worst band): from
  :func:`galmap.latent.outliers.score` (robust Mahalanobis distance of the latent mean;
  per-band reconstruction chi2/nu);
* ``recon_mean_sigma``: the mean over bands of ``recon_sigma_<band>`` (a residual in every
  band: extra light the decoder cannot draw);
* ``recon_excess_sigma``: the worst band's ``recon_sigma_<band>`` minus the median band's
  (a residual in one band only: a trail, a bad column);
* ``knn_sigma``: ``log10`` of the distance to the ``knn``-th nearest neighbour in the
  standardised latent space (low local density);
* ``iforest_sigma``: scikit-learn's isolation forest (seeded) on the standardised latents;
* ``m20_sigma``, ``asymmetry_sigma``: statmorph's M20 and asymmetry
  (``structure/morphometry.parquet``): light spread into knots and arcs off the centre;

Which scores enter ``artefact_score`` and ``discovery_score`` (their mean, in sigmas)
is configuration (``outliers.artefact_scores``, ``outliers.discovery_scores``); the
defaults were chosen on the validation half of the default sky (:func:`validation_half`,
``experiments/anomaly_validation.py``). ``is_artefact`` is ``artefact_score`` above
``outliers.artefact_sigma``. A galaxy without a score (no finite latents, no
morphometry) has NaN there; the means skip NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from galmap.latent.outliers import latent_columns, upper_z
from galmap.latent.outliers import score as latent_scores
from galmap.mock.anomalies import ASTROPHYSICAL, INSTRUMENTAL  # noqa: F401 - re-exported for the stage


def validation_half(ids: Sequence[str], seed: int) -> np.ndarray:
    """True for the galaxies of the validation half: a seeded permutation of the sorted ids, its first
    half (rounded down). A function of the set of ids, not of their order."""
    ids = np.asarray(ids, dtype=str)
    sorted_rows = np.argsort(ids, kind="stable")
    order = np.random.default_rng(seed).permutation(len(ids))
    out = np.zeros(len(ids), bool)
    out[sorted_rows[order[: len(ids) // 2]]] = True
    return out


def _z(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    return upper_z(np.where(ok, v, 0.0), ok) if ok.sum() > 2 else np.full(len(v), np.nan)


def unsupervised_scores(
    latents: pd.DataFrame,
    morphometry: pd.DataFrame | None = None,
    seed: int = 0,
    knn: int = 5,
    n_trees: int = 200,
) -> pd.DataFrame:
    """Every score of the module docstring, one row per galaxy of ``latents`` (same order).

    ``morphometry``: statmorph's table (``id, m20, asymmetry, flag``; rows with a non-zero
    flag get NaN); without it those scores are NaN.
    """
    base = latent_scores(latents, seed=seed, per_band=True)
    ids = base["id"].to_numpy()
    out = base[["id", "mahalanobis_sigma", "recon_sigma", "recon_band"]].copy()
    bands = [c for c in base.columns if c.startswith("recon_sigma_")]
    for c in bands:
        out[c] = base[c]
    per = base[bands].to_numpy() if bands else base[["recon_sigma"]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a galaxy without any band: NaN
        out["recon_mean_sigma"] = np.nanmean(per, axis=1)
        out["recon_excess_sigma"] = np.nanmax(per, axis=1) - np.nanmedian(per, axis=1)
    mu = latents[latent_columns(latents)].to_numpy(np.float64)
    ok = np.isfinite(mu).all(axis=1)
    z = (mu[ok] - np.median(mu[ok], axis=0)) / np.maximum(mu[ok].std(axis=0), 1e-12)
    dist, _ = NearestNeighbors(n_neighbors=min(knn + 1, ok.sum())).fit(z).kneighbors(z)
    k_d = np.full(len(mu), np.nan)
    k_d[ok] = dist[:, -1]
    out["knn_sigma"] = _z(np.log10(np.maximum(k_d, 1e-12)))
    iso = np.full(len(mu), np.nan)
    iso[ok] = -IsolationForest(n_estimators=n_trees, random_state=seed).fit(z).score_samples(z)
    out["iforest_sigma"] = _z(iso)
    for name in ("m20", "asymmetry"):
        v = np.full(len(ids), np.nan)
        if morphometry is not None and name in morphometry.columns:
            m = morphometry[morphometry.get("flag", 0) == 0].drop_duplicates("id").set_index("id")[name]
            v = pd.Series(ids).map(m).to_numpy(np.float64)
        out[f"{name}_sigma"] = _z(v)
    return out


def _score_matrix(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The named score columns as an (N, len(columns)) array; a clear error for a name not in the table."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"unknown score(s) {missing}; known: {[c for c in table.columns if c.endswith('_sigma')]}")
    return table[list(columns)].to_numpy(np.float64)


def mean_score(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The mean, skipping NaN, of the named score columns (sigmas); NaN where all are NaN."""
    v = _score_matrix(table, columns)
    n = np.isfinite(v).sum(axis=1)
    return np.where(n > 0, np.nansum(v, axis=1) / np.maximum(n, 1), np.nan)


def max_score(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The largest, skipping NaN, of the named score columns (sigmas); NaN where all are NaN."""
    v = _score_matrix(table, columns)
    has = np.isfinite(v).any(axis=1)
    return np.where(has, np.nanmax(np.where(np.isfinite(v), v, -np.inf), axis=1), np.nan)


def combine(
    scores: pd.DataFrame, discovery: Sequence[str], artefact: Sequence[str], artefact_sigma: float
) -> pd.DataFrame:
    """``scores`` with ``discovery_score`` (mean of ``discovery``), ``artefact_score`` (the
    largest of ``artefact``, recalibrated by :func:`galmap.latent.outliers.upper_z`) and
    ``is_artefact`` (``artefact_score > artefact_sigma``), all in sigmas."""
    out = scores.copy()
    out["discovery_score"] = mean_score(out, discovery)
    out["artefact_score"] = _z(max_score(out, artefact))
    out["is_artefact"] = np.nan_to_num(out["artefact_score"].to_numpy(), nan=-np.inf) > artefact_sigma
    return out
