"""Probes of what the latents keep: a seeded random forest from the latent means to truth quantities,
beside the same forest on the features of a CNN trained on the images (the ceiling of what they hold).

A *quantity* (config ``vae.probes.quantities``) is a truth column with the population it is probed in
(``where``: a :meth:`pandas.DataFrame.query` on the truth table, e.g. bars among disk galaxies, clumps
among galaxies with clumps: so that the score measures the feature and not the galaxy type) and its kind:
``regression`` (test-split R², 1 = perfect, 0 = the test mean) or ``class`` (test-split accuracy).

Every probe is fitted on the VAE's train split and scored on its test split (the splits of
``latents.parquet``: a hash of (seed, id)), the same galaxies for the latents of every K and for the
image features.

The ceiling CNN is :class:`galmap.classify.cnn.MorphologyCNN` trained by
:func:`galmap.classify.cnn.train_cnn` with the classification CNN's settings (``classify.cnn``: the same
care and budget), one head per quantity: a class quantity's classes, a regression quantity's
``cnn_classes`` quantile bins (edges from the train split of its population); galaxies outside a
quantity's population carry no label for its head. Early stopping on the VAE's val split. Its features
are the pooled activations before the heads (:func:`cnn_features`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("galmap")

#: Columns of ``probes.csv``.
PROBE_COLUMNS = ["latent_dim", "quantity", "population", "metric", "n_train", "n_test", "latent_r2", "image_r2"]


@dataclass(frozen=True)
class Quantity:
    """One probed truth quantity: its column, population (a label and a truth query) and kind."""

    name: str
    population: str
    where: str | None
    kind: str  # "regression" or "class"

    @property
    def metric(self) -> str:
        return "r2" if self.kind == "regression" else "accuracy"


def quantities(entries: Sequence[Mapping[str, Any]]) -> list[Quantity]:
    """:class:`Quantity` specs from the config's ``vae.probes.quantities`` list."""
    out = []
    for k, e in enumerate(entries):
        kind = str(e.get("kind", "regression"))
        if kind not in ("regression", "class"):
            raise ValueError(f"vae.probes.quantities[{k}] ({e.get('name')}): kind must be regression or class")
        out.append(Quantity(str(e["name"]), str(e.get("population", "all")), e.get("where"), kind))
    return out


def population(truth: pd.DataFrame, q: Quantity) -> pd.DataFrame:
    """``id, value`` of the galaxies of ``q``'s population with a finite (or non-empty) value."""
    if q.name not in truth.columns:
        raise KeyError(f"probe {q.name!r}: the truth table has no column {q.name!r}")
    t = truth.query(q.where) if q.where else truth
    v = t[q.name]
    keep = v.notna() if q.kind == "class" else np.isfinite(pd.to_numeric(v, errors="coerce"))
    return pd.DataFrame({"id": t.loc[keep, "id"].astype(str).to_numpy(), "value": v[keep].to_numpy()})


def _seed(seed: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def forest_score(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    kind: str,
    params: Mapping[str, Any],
    seed: int,
    threads: int = 1,
) -> float:
    """Test-split R² (``regression``) or accuracy (``class``) of a seeded random forest (NaN without data)."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.metrics import accuracy_score, r2_score

    if len(y_train) < 2 or len(y_test) < 2:
        return float("nan")
    kw = {
        "n_estimators": int(params["n_estimators"]),
        "min_samples_leaf": int(params["min_samples_leaf"]),
        "random_state": seed,
        "n_jobs": threads,
    }
    if kind == "class":
        model = RandomForestClassifier(**kw).fit(x_train, np.asarray(y_train).astype(str))
        return float(accuracy_score(np.asarray(y_test).astype(str), model.predict(x_test)))
    model = RandomForestRegressor(**kw).fit(x_train, y_train.astype(np.float64))
    return float(r2_score(y_test.astype(np.float64), model.predict(x_test)))


def probe_scores(
    features: pd.DataFrame,
    columns: Sequence[str],
    truth: pd.DataFrame,
    specs: Sequence[Quantity],
    params: Mapping[str, Any],
    seed: int,
    threads: int = 1,
) -> pd.DataFrame:
    """Per quantity: ``quantity, population, metric, n_train, n_test, score`` of a forest on ``columns``.

    ``features`` has ``id``, ``split`` (train/val/test) and the feature ``columns``; galaxies with a
    non-finite feature are left out (the caller records them as failures).
    """
    feats = features[np.isfinite(features[list(columns)].to_numpy(np.float64)).all(axis=1)]
    rows = []
    for q in specs:
        d = population(truth, q).merge(feats, on="id")
        tr, te = d[d["split"] == "train"], d[d["split"] == "test"]
        score = forest_score(
            tr[list(columns)].to_numpy(np.float64), tr["value"].to_numpy(),
            te[list(columns)].to_numpy(np.float64), te["value"].to_numpy(),
            q.kind, params, _seed(seed, q.name), threads,
        )  # fmt: skip
        rows.append(
            {"quantity": q.name, "population": q.population, "metric": q.metric,
             "n_train": len(tr), "n_test": len(te), "score": score}
        )  # fmt: skip
    return pd.DataFrame(rows)


def ceiling_targets(
    truth: pd.DataFrame, split: pd.Series, specs: Sequence[Quantity], n_bins: int
) -> tuple[pd.DataFrame, list[int]]:
    """The ceiling CNN's labels: a long table ``id, question, class, split`` and each head's class count.

    ``split`` maps id -> train/val/test. A regression quantity's classes are ``n_bins`` quantile bins
    whose edges come from its population's train galaxies; a class quantity's are its sorted values.
    """
    parts, n_classes = [], []
    for q in specs:
        d = population(truth, q)
        d["split"] = d["id"].map(split)
        d = d[d["split"].notna()]
        if q.kind == "class":
            names = sorted(d["value"].astype(str).unique())
            codes = d["value"].astype(str).map({c: i for i, c in enumerate(names)}).to_numpy()
            n_classes.append(max(len(names), 2))
        else:
            v = d["value"].to_numpy(np.float64)
            train = v[(d["split"] == "train").to_numpy()]
            edges = np.unique(np.quantile(train, np.linspace(0, 1, n_bins + 1)[1:-1])) if len(train) else []
            codes = np.searchsorted(edges, v, side="right")
            n_classes.append(len(edges) + 1 if len(edges) else 2)
        parts.append(pd.DataFrame({"id": d["id"], "question": q.name, "class": codes.astype(np.int64),
                                   "split": d["split"]}))  # fmt: skip
    return pd.concat(parts, ignore_index=True), n_classes


def cnn_features(model: Any, paths: Sequence[str | Path], batch_size: int = 256) -> pd.DataFrame:
    """``id, f_0..`` : a :class:`~galmap.classify.cnn.MorphologyCNN`'s pooled features of every galaxy."""
    import torch

    from galmap.core.io import read_shard
    from galmap.nn.inputs import shard_inputs

    model.eval()
    device = next(model.parameters()).device
    ids, feats = [], []
    with torch.no_grad():
        for path in paths:
            data = shard_inputs(read_shard(path, datasets=()), 0, 0.0, 0.0, 0.0)
            for start in range(0, len(data), batch_size):
                feats.append(model.body(data.x[start : start + batch_size].to(device)).cpu().numpy())
            ids += [str(g) for g in data.ids]
    f = np.concatenate(feats) if feats else np.zeros((0, model.channels[-1]), np.float32)
    table = pd.DataFrame(f.astype(np.float32), columns=[f"f_{i}" for i in range(f.shape[1])])
    table.insert(0, "id", ids)
    return table
