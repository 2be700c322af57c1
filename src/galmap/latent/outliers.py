"""Galaxies far out in latent space or badly reconstructed: scores, flags and their validation.

Two scores per galaxy, both in sigmas of the population's own spread:

* ``mahalanobis_sigma``: the squared Mahalanobis distance ``d2`` of the latent mean
  from the population's robust centre and covariance (scikit-learn's
  :class:`~sklearn.covariance.MinCovDet`, fitted on every galaxy with finite
  latents), as the upper-tail robust z-score of ``log10(d2)`` (:func:`upper_z`).
  (For Gaussian latents ``d2`` would follow a chi-square law with ``K`` degrees of
  freedom; VAE latents trained with a chi2 likelihood are far from Gaussian: that
  calibration flagged over half the normal mock galaxies at 4 sigma, so the
  population calibrates the scale instead.)
* ``recon_sigma``: the reconstruction's chi2 per pixel, ``chi2/nu``, calibrated the
  same way. With ``per_band`` (the default) and the encoder's per-band
  ``chi2_nu_<band>`` columns, each band is calibrated on its own
  (``recon_sigma_<band>``) and ``recon_sigma`` is the largest of them
  (``recon_band`` names it): an artefact in one band (a satellite trail, a bad
  column) is otherwise diluted by the bands without it, by a factor of the number
  of bands in ``chi2/nu``. Without per-band columns the all-band ``chi2_nu`` is used.

The calibration (:func:`upper_z`) is ``(log v - median) / s`` with ``s`` the median
of ``log v - median`` over the galaxies above the median (the upper semi-MAD)
divided by Φ⁻¹(3/4) ≈ 0.67449 (:data:`galmap.core.stats.NORMAL_MAD`, scipy's "normal"
scale): anomalies lie in the upper tail, and ``log chi2/nu`` of normal galaxies is
skewed towards it (bright, structured galaxies the decoder smooths),
so the symmetric MAD, dominated by the narrow lower half, made "4 sigma" flag ~6%
of the normal mock galaxies. Both scales equal the standard deviation for a
Gaussian population. The fraction of normal galaxies above ``threshold_sigma`` is
measured, not assumed: :func:`evaluate` reports it.

``is_outlier`` when either exceeds ``threshold_sigma``. With injected anomalies
(the mock's ``anomaly`` truth column) :func:`evaluate` gives the recall per kind and
the false-positive rate on normal galaxies, and :func:`roc` the ROC curve of the
combined score ``max(mahalanobis_sigma, recon_sigma)`` (scikit-learn's :func:`~sklearn.metrics.roc_curve`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.covariance import MinCovDet
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from galmap.core.stats import NORMAL_MAD, robust_std


def robust_z(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``(v - median) / (MAD / Φ⁻¹(3/4))`` with median and MAD over ``ok`` (:func:`robust_std`); NaN elsewhere."""
    med = np.median(values[ok])
    mad = robust_std(values[ok])
    return np.where(ok, (values - med) / max(mad, 1e-12), np.nan)


def upper_z(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``(v - median) / s`` with ``s = median(v - median | v > median) / Φ⁻¹(3/4)`` over ``ok``; NaN elsewhere.

    The upper semi-MAD: the spread of the side where outliers lie, insensitive to
    the few outliers themselves (they move the median of the upper half by at most
    their fraction). For a Gaussian population ``s`` is its standard deviation.
    """
    v = values[ok]
    med = np.median(v)
    above = v[v > med] - med
    s = float(np.median(above)) / NORMAL_MAD if above.size else 0.0
    return np.where(ok, (values - med) / max(s, 1e-12), np.nan)


def band_chi2_columns(table: pd.DataFrame) -> list[str]:
    """The per-band reconstruction columns ``chi2_nu_<band>`` of a latents table (:func:`galmap.latent.vae.encode`)."""
    return [c for c in table.columns if c.startswith("chi2_nu_")]


def latent_columns(table: pd.DataFrame) -> list[str]:
    """The latent-mean columns ``mu_0..mu_{K-1}`` of a latents table, in order."""
    cols = [c for c in table.columns if c.startswith("mu_")]
    return sorted(cols, key=lambda c: int(c.split("_")[1]))


def score(latents: pd.DataFrame, threshold_sigma: float = 4.0, seed: int = 0, per_band: bool = True) -> pd.DataFrame:
    """Outlier scores of every galaxy of a latents table (:func:`galmap.latent.vae.encode`).

    Returns ``id, mahalanobis_d2, mahalanobis_sigma, recon_chi2, recon_sigma,
    recon_band, recon_sigma_<band>..., outlier_score, is_outlier`` (sigmas as in the
    module docstring; ``recon_chi2`` is the all-band chi2/nu; the per-band columns
    and ``recon_band`` only with ``per_band`` and ``chi2_nu_<band>`` columns in the
    table, else ``recon_band`` is ``"all"``). Galaxies without finite latents or
    reconstruction get NaN scores and ``is_outlier = False`` (they are listed in the
    VAE's failures); a band without data in a galaxy is left out of its maximum.
    """
    mu = latents[latent_columns(latents)].to_numpy(dtype=np.float64)
    chi2 = latents["chi2_nu"].to_numpy(dtype=np.float64)
    ok = np.isfinite(mu).all(axis=1) & np.isfinite(chi2) & (chi2 > 0)
    k = mu.shape[1]
    if ok.sum() <= k + 1:
        raise ValueError(
            f"outlier scoring needs more galaxies ({int(ok.sum())} with finite latents) than latent dimensions ({k})"
        )
    mcd = MinCovDet(random_state=seed).fit(mu[ok])
    d2 = np.full(len(mu), np.nan)
    d2[ok] = mcd.mahalanobis(mu[ok])
    m_sigma = upper_z(np.log10(d2), ok)
    out = {"id": latents["id"].astype(str).to_numpy(), "mahalanobis_d2": d2, "mahalanobis_sigma": m_sigma}
    out["recon_chi2"] = chi2
    band_cols = band_chi2_columns(latents) if per_band else []
    if band_cols:
        per = {}
        for col in band_cols:
            c = latents[col].to_numpy(dtype=np.float64)
            ok_b = ok & np.isfinite(c) & (c > 0)
            per[col.removeprefix("chi2_nu_")] = upper_z(np.log10(np.where(ok_b, c, 1.0)), ok_b)
        stack = np.column_stack(list(per.values()))
        has = np.isfinite(stack).any(axis=1)
        best = np.argmax(np.nan_to_num(stack, nan=-np.inf), axis=1)
        r_sigma = np.where(has, np.nan_to_num(stack, nan=-np.inf)[np.arange(len(stack)), best], np.nan)
        out["recon_sigma"] = r_sigma
        out["recon_band"] = np.where(has, np.asarray(list(per))[best], "")
        out |= {f"recon_sigma_{b}": z for b, z in per.items()}
    else:
        out["recon_sigma"] = upper_z(np.log10(np.where(ok, chi2, 1.0)), ok)
        out["recon_band"] = np.where(ok, "all", "")
    combined = np.fmax(m_sigma, out["recon_sigma"])
    out["outlier_score"] = combined
    out["is_outlier"] = np.nan_to_num(combined, nan=-np.inf) > threshold_sigma
    return pd.DataFrame(out)


def roc(scores: np.ndarray, is_anomaly: np.ndarray) -> pd.DataFrame:
    """ROC curve of ``scores`` (higher = more anomalous): ``threshold, fpr, tpr`` for every cut.

    ``sklearn.metrics.roc_curve(drop_intermediate=False)``: one row per distinct score, from
    ``threshold = inf`` (nothing flagged) down. A galaxy without a score (NaN) ranks below every
    score (threshold ``-inf``); without anomalies (or without normal galaxies) the rate that has
    no denominator is 0.
    """
    s = np.asarray(scores, float)
    y = np.asarray(is_anomaly, bool)
    missing = np.isnan(s) | (s == -np.inf)
    low = s[~missing].min() if (~missing).any() else 0.0
    floor = low - max(1.0, abs(low))  # below every score: ranked last
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one class only: its rate is NaN, set to 0
        fpr, tpr, thresholds = roc_curve(y, np.where(missing, floor, s), drop_intermediate=False)
    return pd.DataFrame(
        {
            "threshold": np.where(thresholds == floor, -np.inf, thresholds) if missing.any() else thresholds,
            "fpr": np.nan_to_num(fpr),
            "tpr": np.nan_to_num(tpr),
        }
    )


def recall_at_fpr(curve: pd.DataFrame, max_fpr: float) -> float:
    """The highest true-positive rate of a ROC curve with false-positive rate <= ``max_fpr``."""
    ok = curve["fpr"] <= max_fpr + 1e-12
    return float(curve.loc[ok, "tpr"].max())


def evaluate(table: pd.DataFrame, anomaly: pd.Series, max_fpr: float = 0.01) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recall of ``is_outlier`` per anomaly kind and false-positive rate on normal galaxies,
    and the ROC curve of ``outlier_score`` (:func:`roc`).

    ``anomaly`` holds the truth's kind per id (``"none"`` for normal galaxies).
    Rows: one per kind, ``all`` (every anomaly) and ``none`` (normal galaxies, whose
    ``flagged_fraction`` is the false-positive rate); the ``all`` row also holds the
    ROC area and the recall reachable at ``max_fpr``.
    """
    kind = table["id"].map(anomaly).fillna("none").to_numpy()
    flagged = table["is_outlier"].to_numpy(bool)
    bad = kind != "none"
    curve = roc(table["outlier_score"].to_numpy(), bad)
    auc = float(np.trapezoid(curve["tpr"], curve["fpr"])) if bad.any() else np.nan
    rows = []
    for name in [*sorted(set(kind[bad])), "all", "none"]:
        sel = bad if name == "all" else kind == name
        rows.append(
            {
                "kind": name,
                "n": int(sel.sum()),
                "n_flagged": int(flagged[sel].sum()),
                "flagged_fraction": float(flagged[sel].mean()) if sel.any() else np.nan,
                "median_score": float(np.nanmedian(table["outlier_score"].to_numpy()[sel])) if sel.any() else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    out["roc_auc"] = np.where(out["kind"] == "all", auc, np.nan)
    out[f"recall_at_fpr_{max_fpr:g}"] = np.where(out["kind"] == "all", recall_at_fpr(curve, max_fpr), np.nan)
    return out, curve
