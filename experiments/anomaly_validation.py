"""Choose the anomaly stage's score combinations on the VALIDATION half of the default sky.

Reads a run directory (``results/vae/z40/latents.parquet``, ``results/structure/morphometry.parquet``,
``results/images/decals/shard-*.h5``, ``results/catalog/truth.parquet``), computes every
unsupervised score (:mod:`galmap.anomalies.scores`) and prints, on the galaxies of
:func:`galmap.anomalies.scores.validation_half` (seed = the config's, 42) only:

* discovery candidates: ROC area of lens arcs + irregulars against normal galaxies and how
  many of them the top 2 % of the validation half holds;
* artefact candidates: recall of the injected artefacts at <= 1 % of the other galaxies,
  and the 99th percentile of ``artefact_score`` over the other galaxies (``outliers.artefact_sigma``);
* active-learning variants (:mod:`galmap.anomalies.active`): the simulated expert in 4 rounds
  of 12 on the half (50 viewed = 4 % of it, as 100 of the whole sky): anomalies seen among
  the first 50 viewed after each round, for three ways of combining the relevance ``p`` with
  the anomaly rank ``u`` and two feature sets.

Usage: ``PYTHONPATH=src python experiments/anomaly_validation.py . [seed]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from galmap.anomalies import active
from galmap.anomalies.scores import (
    ASTROPHYSICAL,
    INSTRUMENTAL,
    combine,
    max_score,
    mean_score,
    unsupervised_scores,
    validation_half,
)
from galmap.latent.outliers import latent_columns

DISCOVERY = {
    "recon_mean": ["recon_mean_sigma"],
    "m20": ["m20_sigma"],
    "knn": ["knn_sigma"],
    "iforest": ["iforest_sigma"],
    "mahalanobis": ["mahalanobis_sigma"],
    "m20+recon_mean": ["m20_sigma", "recon_mean_sigma"],
    "m20+knn": ["m20_sigma", "knn_sigma"],
    "m20+recon_mean+knn": ["m20_sigma", "recon_mean_sigma", "knn_sigma"],
    "m20+recon_mean+iforest": ["m20_sigma", "recon_mean_sigma", "iforest_sigma"],
    "m20+asym+recon_mean": ["m20_sigma", "asymmetry_sigma", "recon_mean_sigma"],
    "m20+asym+recon_mean+knn": ["m20_sigma", "asymmetry_sigma", "recon_mean_sigma", "knn_sigma"],
}
DISCOVERY_CHOSEN = ["m20_sigma", "recon_mean_sigma", "knn_sigma"]  # the config's outliers.discovery_scores
ARTEFACT_CHOSEN = ["recon_excess_sigma"]  # outliers.artefact_scores
ARTEFACT_SIGMA = 5.7  # outliers.artefact_sigma: the 99th percentile printed below, rounded
ARTEFACT = {
    "recon_max": ("max", ["recon_sigma"]),
    "recon_excess": ("max", ["recon_excess_sigma"]),
    "max(recon_max,recon_excess)": ("max", ["recon_sigma", "recon_excess_sigma"]),
}


def load(run: Path) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    r = run / "results"
    lat = pd.read_parquet(r / "vae/z40/latents.parquet")
    morph = pd.read_parquet(r / "structure/morphometry.parquet")
    s = unsupervised_scores(lat, morph, seed=42)
    truth = pd.read_parquet(r / "catalog/truth.parquet").set_index("id")
    kind = s["id"].map(truth["anomaly"]).fillna("none").to_numpy()
    return s, kind, lat


def main(run: str, seed: int = 42) -> None:
    s, kind, lat = load(Path(run))
    val = validation_half(s["id"], seed)
    s, kind, lat = s[val].reset_index(drop=True), kind[val], lat[val].reset_index(drop=True)
    astro, art, none = np.isin(kind, ASTROPHYSICAL), np.isin(kind, INSTRUMENTAL), kind == "none"
    print(f"validation half: {len(s)} galaxies, {astro.sum()} astrophysical, {art.sum()} artefacts")
    top = int(0.02 * len(s))
    for name, cols in DISCOVERY.items():
        v = np.nan_to_num(mean_score(s, cols), nan=-1e9)
        sel = astro | none
        auc = roc_auc_score(astro[sel], v[sel])
        order = np.argsort(-np.where(art, -1e9, v), kind="stable")[:top]
        print(
            f"discovery {name:28s} ROC area {auc:.3f}  astrophysical in top {top}: {astro[order].sum()}/{astro.sum()}"
        )
    for name, (how, cols) in ARTEFACT.items():
        v = np.nan_to_num((max_score if how == "max" else mean_score)(s, cols), nan=-1e9)
        thr = np.quantile(v[~art], 0.99)
        rec = {k: f"{(v[kind == k] > thr).sum()}/{(kind == k).sum()}" for k in INSTRUMENTAL}
        print(f"artefact {name:26s} recall at 1% {np.mean(v[art] > thr):.2f} (threshold {thr:.2f} sigma) {rec}")
    chosen = combine(s, DISCOVERY_CHOSEN, ARTEFACT_CHOSEN, ARTEFACT_SIGMA)
    a = chosen["artefact_score"].to_numpy()
    print(f"artefact_score (chosen): 99th percentile over non-artefacts {np.nanquantile(a[~art], 0.99):.2f} sigma")
    active_variants(s, chosen, kind, lat, seed)


def active_variants(s: pd.DataFrame, chosen: pd.DataFrame, kind: np.ndarray, lat: pd.DataFrame, seed: int) -> None:
    """Anomalies seen among the first 50 viewed after each of 4 rounds of 12 labels, per variant."""
    answers = active.truth_labels(kind)
    target = answers == "interesting"
    score_cols = [c for c in s.columns if c.endswith("_sigma")]
    mu = lat[latent_columns(lat)].to_numpy(np.float64)
    zlat = (mu - np.median(mu, axis=0)) / np.maximum(mu.std(axis=0), 1e-12)
    feats = {
        "scores": active.features(chosen, score_cols),
        "latents+scores": np.c_[zlat, active.features(chosen, score_cols)],
    }
    original = active.relevance

    def variant(mode):
        def rel(x, discovery, labelled, seed, n_trees=200, floor=0.1):
            score, p = original(x, discovery, labelled, seed, n_trees, floor)
            if not labelled or mode == "product":
                return score, p
            u = active.rank_fraction(discovery)
            if mode == "p_only":
                return p + 1e-3 * u, p
            idx = np.fromiter(labelled, dtype=int)  # blend weighted by the distance to the nearest label
            d = NearestNeighbors(n_neighbors=1).fit(x[idx]).kneighbors(x)[0][:, 0]
            w = np.exp(-d / max(float(np.median(d)), 1e-12))
            return (1 - w) * u + w * p, p

        return rel

    try:
        for mode in ("product", "blend", "p_only"):
            active.relevance = variant(mode)
            for name, x in feats.items():
                rows, _ = active.simulate(
                    x,
                    chosen["discovery_score"].to_numpy(),
                    chosen["is_artefact"].to_numpy(),
                    answers,
                    target,
                    rounds=4,
                    round_size=12,
                    seed=seed,
                    viewed=50,
                )
                print(
                    f"active {mode:8s} {name:15s} seen in first 50 per round {rows['anomalies_seen'].tolist()}"
                    f" artefacts {rows['artefacts_seen'].tolist()} (of {target.sum()})"
                )
    finally:
        active.relevance = original


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 42)
