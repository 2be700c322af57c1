"""The anomaly search job: scores, artefact flag, ranking (with the expert's labels), simulated expert, review page."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, read_table, write_table

log = logging.getLogger(__name__)

#: Columns of ``active.csv``.
ACTIVE_COLUMNS = [
    "round",
    "labels_used",
    "objects_viewed",
    "anomalies_seen",
    "anomalies_total",
    "recall",
    "artefacts_seen",
    "mergers_seen",
]


def rank_galaxies(
    params: Mapping[str, Any],
    seed: int,
    latents: pd.DataFrame,
    morphometry: pd.DataFrame | None,
    labels: pd.DataFrame | None,
) -> pd.DataFrame:
    """The ranking table: every score, ``discovery_score``, ``artefact_score``, ``is_artefact``,
    ``label`` (the expert's, "" where none), ``relevance`` (the model's p; NaN without labels),
    ``relevance_score`` and ``rank`` (1 = first to look at: labelled first, in file order; flagged
    artefacts last), sorted by rank."""
    from galmap.anomalies import active
    from galmap.anomalies.scores import combine, unsupervised_scores

    scores = unsupervised_scores(latents, morphometry, seed, int(params["knn"]), int(params["trees"]))
    table = combine(scores, params["discovery_scores"], params["artefact_scores"], float(params["artefact_sigma"]))
    row = {g: i for i, g in enumerate(table["id"])}
    labelled = {} if labels is None else {row[g]: lab for g, lab in zip(labels["id"], labels["label"], strict=True)}
    x = active.features(table, score_columns(table))
    rel, p = active.relevance(x, table["discovery_score"].to_numpy(), labelled, seed, int(params["trees"]))
    table["label"] = ""
    for i, lab in labelled.items():
        table.loc[i, "label"] = lab
    table["relevance"] = p
    table["relevance_score"] = rel
    view = active.order(rel, table["is_artefact"].to_numpy(), list(labelled))
    table["rank"] = 0
    table.loc[view, "rank"] = np.arange(1, len(view) + 1)
    return table.sort_values("rank").reset_index(drop=True)


def score_columns(table: pd.DataFrame) -> list[str]:
    """The unsupervised score columns (``*_sigma``) of a ranking table."""
    return [c for c in table.columns if c.endswith("_sigma")]


def expert_rounds(
    params: Mapping[str, Any], seed: int, table: pd.DataFrame, truth: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulated expert (:func:`galmap.anomalies.active.simulate`) on a ranking table:
    ``active.csv`` rows and the curve ``n_viewed, random, unsupervised, active`` (anomalies seen
    after n objects viewed; random: the expectation)."""
    from galmap.anomalies import active

    t = truth.set_index("id")
    kind = table["id"].map(t["anomaly"]).fillna("none").to_numpy()
    merger = (table["id"].map(t["merger_state"]).fillna("none") != "none").to_numpy() if "merger_state" in t else None
    answers = active.truth_labels(kind, merger, bool(params["include_mergers"]))
    target = answers == "interesting"
    x = active.features(table, score_columns(table))
    rows, orders = active.simulate(
        x,
        table["discovery_score"].to_numpy(),
        table["is_artefact"].to_numpy(),
        answers,
        target,
        int(params["rounds"]),
        int(params["round_size"]),
        seed,
        int(params["viewed"]),
        merger,
        int(params["trees"]),
    )
    n_max = min(len(table), 4 * int(params["viewed"]))
    n = np.arange(1, n_max + 1)
    curve = pd.DataFrame(
        {
            "n_viewed": n,
            "random": n * target.sum() / max(len(table), 1),
            "unsupervised": active.seen_curve(orders[0], target, n_max),
            "active": active.seen_curve(orders[-1], target, n_max),
        }
    )
    return rows, curve


def stamps_for(ids: Sequence[str], image_paths: Sequence[str]) -> dict[str, bytes]:
    """PNG stamps (:func:`galmap.anomalies.review.colour_png`) of the galaxies ``ids`` found in the shards."""
    from galmap.anomalies.review import colour_png

    want = set(ids)
    out: dict[str, bytes] = {}
    for path in image_paths:
        shard = read_shard(path, datasets=())
        sky = shard.attrs.get("sky_sigma", np.ones(shard.images.shape[1]))
        for i, gid in enumerate(np.asarray(shard.ids, str)):
            if gid in want:
                out[gid] = colour_png(shard.images[i], sky)
    return out


def anomalies_file(
    params: Mapping[str, Any],
    seed: int,
    latents_path: str,
    morphometry_path: str | None,
    truth_path: str | None,
    labels_path: str | None,
    image_paths: Sequence[str],
    ranking_path: str,
    active_path: str,
    curve_path: str,
    review_path: str,
    failures_path: str,
) -> None:
    """Write ``ranking.parquet``, ``active.csv`` and ``active_curve.csv`` (simulated expert; empty
    without a truth), ``review.html`` and ``failures.csv`` (galaxies without a discovery score)."""
    from galmap.anomalies.active import read_labels
    from galmap.anomalies.review import gallery

    latents = read_table(latents_path)
    morph = read_table(morphometry_path) if morphometry_path else None
    labels = read_labels(labels_path, latents["id"].astype(str)) if labels_path and Path(labels_path).exists() else None
    table = rank_galaxies(params, seed, latents, morph, labels)
    write_table(ranking_path, table)
    failures = FailureLog("outliers")
    for gid in table.loc[table["discovery_score"].isna(), "id"]:
        failures.add(gid, "no discovery score: no finite latents, reconstruction or morphometry")
    failures.write(failures_path)
    truth = read_table(truth_path) if truth_path else None
    if truth is not None and "anomaly" in truth.columns:
        rows, curve = expert_rounds(params, seed, table, truth)
    else:
        rows = pd.DataFrame(columns=["round", *ACTIVE_COLUMNS[1:]])
        curve = pd.DataFrame(columns=["n_viewed", "random", "unsupervised", "active"])
    write_table(active_path, rows)
    write_table(curve_path, curve)
    top = table[~table["is_artefact"]].head(int(params["review_top"]))
    cols = ["discovery_score", "artefact_score", "relevance_score", *params["discovery_scores"], "label"]
    note = (
        f"The first {len(top)} candidates of the discovery ranking (flagged artefacts left out), "
        f"{'with' if labels is not None else 'without'} the expert's labels. Scores in sigmas."
    )
    page = gallery(top, stamps_for(top["id"].tolist(), image_paths), cols, "galmap: anomaly candidates", note)
    Path(review_path).parent.mkdir(parents=True, exist_ok=True)
    Path(review_path).write_text(page)
    log.info(
        "anomalies: %d galaxies, %d flagged artefacts, %d labels\n%s",
        len(table),
        int(table["is_artefact"].sum()),
        0 if labels is None else len(labels),
        rows.to_string(index=False),
    )
