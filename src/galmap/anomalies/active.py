"""An expert in the loop: labels, the relevance model, the simulated expert and its measurement.

The approach follows Astronomaly (Lochner & Bassett 2021): the unsupervised ranking is
shown first; the expert labels the top candidates; a relevance model trained on those
labels re-weights the anomaly score of the rest (their "trained score": the anomaly score
times what the user is predicted to find relevant).

* Features: the unsupervised scores (sigmas, NaN -> 0): the per-band residuals, densities
  and morphology tell a blue arc from a merger or a ghost; the 40 latents were measured
  too and did worse on the validation half (``experiments/anomaly_validation.py``).
* Relevance ``p``: scikit-learn's random forest (seeded, balanced classes) trained on the
  labelled galaxies, interesting = 1, boring and artefact = 0; the fraction of its
  trees voting "interesting". With one class only labelled it has nothing to learn and
  ``p`` is that class (1 or 0) everywhere.
* ``relevance_score = u * (floor + p)`` with ``u`` the discovery score's rank fraction
  (0 lowest .. 1 highest) and ``floor`` (0.1) keeping the anomaly score's order among
  galaxies the model calls irrelevant. Flagged artefacts (``is_artefact``) rank after
  every other galaxy; labelled galaxies are not re-ranked.

A random forest, not a Gaussian process or a linear model: a handful of positives among
tens of labels, features of mixed scales, and interactions it can learn without tuning;
Astronomaly uses one too. Deterministic for a seed. The product (against a blend weighted
by the distance to the nearest label, and against ``p`` alone) was chosen on the
validation half of the default sky.

The simulated expert (:func:`simulate`) answers from the mock's truth: astrophysical
anomalies (``lens_arc``, ``irregular``; mergers too with ``include_mergers``) are
interesting, instrumental ones artefact, the rest boring. It labels ``round_size``
galaxies per round, the top of the current ranking, and the user's view after each
round is: the labelled galaxies in the order seen, then the current ranking.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from galmap.mock.anomalies import ASTROPHYSICAL, INSTRUMENTAL

LABELS = ("interesting", "boring", "artefact")


class LabelsError(ValueError):
    """A labels file that cannot be read: the message names the file, the line and the cause."""


def read_labels(path: str | Path, known_ids: Sequence[str]) -> pd.DataFrame:
    """The expert's labels: a CSV with a header ``id,label`` and one galaxy per line.

    Labels are ``interesting``, ``boring`` or ``artefact`` (case and surrounding spaces
    ignored); blank lines and lines starting with ``#`` are skipped. Returns ``id, label``
    in file order. Raises :class:`LabelsError` naming the line for an unknown id, an
    unknown label, a line without two fields, or an id labelled twice.
    """
    path = Path(path)
    known = set(map(str, known_ids))
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    with path.open(newline="") as fh:
        lines = [(n, line) for n, line in enumerate(fh, start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return pd.DataFrame(columns=["id", "label"])
    header = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
    if header != ["id", "label"]:
        raise LabelsError(f"{path}, line {lines[0][0]}: the header must be 'id,label', found {lines[0][1].strip()!r}")
    for n, line in lines[1:]:
        fields = [f.strip() for f in next(csv.reader([line]))]
        if len(fields) != 2:
            raise LabelsError(f"{path}, line {n}: expected 'id,label', found {line.strip()!r}")
        gid, label = fields[0], fields[1].lower()
        if gid not in known:
            raise LabelsError(f"{path}, line {n}: unknown galaxy id {gid!r} (not in the latents table)")
        if label not in LABELS:
            raise LabelsError(f"{path}, line {n}: unknown label {fields[1]!r} for {gid} (known: {', '.join(LABELS)})")
        if gid in seen:
            raise LabelsError(f"{path}, line {n}: {gid} is labelled again (first on line {seen[gid]})")
        seen[gid] = n
        rows.append({"id": gid, "label": label})
    return pd.DataFrame(rows, columns=["id", "label"])


def features(scores: pd.DataFrame, score_columns: Sequence[str]) -> np.ndarray:
    """The relevance model's features: the named score columns (sigmas), NaN -> 0."""
    x = scores[list(score_columns)].to_numpy(np.float64)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def rank_fraction(values: np.ndarray) -> np.ndarray:
    """Rank of each value as a fraction in [0, 1] (0 lowest; NaN counts as lowest; ties broken by position)."""
    v = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    order = np.argsort(v, kind="stable")
    out = np.empty(len(v))
    out[order] = np.arange(len(v)) / max(len(v) - 1, 1)
    return out


def relevance(
    x: np.ndarray,
    discovery: np.ndarray,
    labelled: Mapping[int, str],
    seed: int,
    n_trees: int = 200,
    floor: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """``relevance_score`` and the model's ``p`` (module docstring) of every galaxy.

    ``x``: features (N, F); ``discovery``: the unsupervised discovery score (N,);
    ``labelled``: row index -> label. Without labels, ``relevance_score = u`` and ``p`` is NaN.
    """
    u = rank_fraction(discovery)
    if not labelled:
        return u, np.full(len(u), np.nan)
    idx = np.fromiter(labelled, dtype=int)
    y = np.array([labelled[i] == "interesting" for i in idx], dtype=int)
    if y.min() == y.max():
        p = np.full(len(u), float(y[0]))
    else:
        rf = RandomForestClassifier(n_estimators=n_trees, random_state=seed, class_weight="balanced", n_jobs=1)
        p = rf.fit(x[idx], y).predict_proba(x)[:, 1]
    return u * (floor + p), p


def order(score: np.ndarray, is_artefact: np.ndarray, labelled_order: Sequence[int] = ()) -> np.ndarray:
    """Row indices as the user views them: the labelled in the order seen, then the rest by
    decreasing ``score``, flagged artefacts last (ties: table order)."""
    done = np.zeros(len(score), bool)
    first = np.asarray(list(labelled_order), dtype=int)
    done[first] = True
    key = np.where(np.asarray(is_artefact, bool), -np.inf, np.nan_to_num(score, nan=-1e300))
    rest = np.flatnonzero(~done)
    rest = rest[np.argsort(-key[rest], kind="stable")]
    return np.concatenate([first, rest])


def truth_labels(kind: np.ndarray, merger: np.ndarray | None = None, include_mergers: bool = False) -> np.ndarray:
    """The simulated expert's answer per galaxy from the truth's ``anomaly`` kind (and merger flag)."""
    kind = np.asarray(kind, str)
    out = np.full(len(kind), "boring", dtype=object)
    out[np.isin(kind, INSTRUMENTAL)] = "artefact"
    out[np.isin(kind, ASTROPHYSICAL)] = "interesting"
    if include_mergers and merger is not None:
        out[np.asarray(merger, bool) & (out == "boring")] = "interesting"
    return out


def simulate(
    x: np.ndarray,
    discovery: np.ndarray,
    is_artefact: np.ndarray,
    answers: np.ndarray,
    is_target: np.ndarray,
    rounds: int,
    round_size: int,
    seed: int,
    viewed: int = 100,
    merger: np.ndarray | None = None,
    n_trees: int = 200,
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Rounds of the simulated expert; one row per round (round 0: unsupervised alone).

    ``answers``: the expert's label per galaxy (:func:`truth_labels`); ``is_target``: the
    anomalies counted as found. Row columns: ``round, labels_used, objects_viewed,
    anomalies_seen, anomalies_total, recall, artefacts_seen, mergers_seen`` over the first
    ``viewed`` galaxies of the user's order. Also returns each round's order (row indices).
    """
    labelled: dict[int, str] = {}
    seen_order: list[int] = []
    rows, orders = [], []
    art = np.asarray(answers) == "artefact"
    for r in range(rounds + 1):
        score, _ = relevance(x, discovery, labelled, seed, n_trees)
        view = order(score, is_artefact, seen_order)
        orders.append(view)
        top = view[:viewed]
        rows.append(
            {
                "round": r,
                "labels_used": len(labelled),
                "objects_viewed": len(top),
                "anomalies_seen": int(is_target[top].sum()),
                "anomalies_total": int(is_target.sum()),
                "recall": float(is_target[top].sum() / max(is_target.sum(), 1)),
                "artefacts_seen": int(art[top].sum()),
                "mergers_seen": int(np.asarray(merger, bool)[top].sum()) if merger is not None else 0,
            }
        )
        if r == rounds:
            break
        new = [i for i in view[len(seen_order) :][:round_size]]
        for i in new:
            labelled[int(i)] = str(answers[i])
        seen_order.extend(int(i) for i in new)
    return pd.DataFrame(rows), orders


def seen_curve(view: np.ndarray, is_target: np.ndarray, n_max: int) -> np.ndarray:
    """Anomalies seen after 1..``n_max`` objects viewed in the order ``view``."""
    return np.cumsum(np.asarray(is_target, bool)[view[:n_max]])
