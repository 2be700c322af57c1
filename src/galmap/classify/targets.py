"""Morphology classification targets, splits, the latent-space random forest and the metrics.

A *question* is anything with a few classes per galaxy (:class:`TargetSpec`):

* a Galaxy Zoo DECaLS question of :data:`galmap.core.galaxyzoo.QUESTIONS` named by itself
  (``bar``): its answers are grouped into the paper's classes, the class is the
  group with the largest vote fraction, and a galaxy is used only where the
  question has at least ``min_votes`` votes (``{question}_total-votes``) and the
  winning group at least ``min_majority`` of them (how the Galaxy Zoo papers score
  accuracy: on confidently labelled galaxies);
* any vote question of a catalog, given as ``answers`` (class -> vote-fraction
  columns) and ``total_votes`` (the column of vote counts), with the same rules;
* a class column (``column``): integer codes into ``classes``, or the class names
  themselves; negative codes, NaN and empty values mean "does not apply"
  (e.g. a ring / not-ring flag).

Each question's usable galaxies are split into train / val / test stratified by
class, from a generator seeded by (seed, question name): the same config gives the
same splits, and both models of :mod:`galmap.classify.targets` are scored on the same test
galaxies.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.galaxyzoo import QUESTION_BY_NAME, QUESTIONS
from galmap.core.stats import balanced_accuracy, bootstrap_interval

log = logging.getLogger("galmap")

#: Columns of the targets table (long format: one row per galaxy and question).
TARGET_COLUMNS = ["id", "question", "class", "split", "majority", "votes"]
#: Columns of the prediction tables.
PREDICTION_COLUMNS = ["id", "question", "split", "true_class", "pred_class", "confidence"]
#: How a model's class probabilities become its answer (config ``classify.decision``): ``most_probable``
#: (the largest probability: best plain accuracy) or ``balanced`` (the largest ratio of the probability to the
#: class's frequency among the training galaxies: best balanced accuracy when the probabilities are calibrated).
DECISIONS = ("most_probable", "balanced")


def decide(proba: np.ndarray, prior: np.ndarray, rule: str) -> np.ndarray:
    """The answer (column index) per galaxy from (N, C) class probabilities and the C training frequencies.

    ``rule`` is one of :data:`DECISIONS`. With ``balanced`` a class absent from the
    training galaxies (frequency 0) is never answered.
    """
    proba = np.asarray(proba, np.float64)
    if rule == "most_probable":
        return proba.argmax(1)
    if rule == "balanced":
        prior = np.asarray(prior, np.float64)
        score = np.where(prior > 0, proba / np.where(prior > 0, prior, 1.0), -np.inf)
        return score.argmax(1)
    raise ValueError(f"classify.decision must be one of {', '.join(DECISIONS)}, not {rule!r}")


def training_frequencies(targets: pd.DataFrame, question: str, n_classes: int) -> np.ndarray:
    """The fraction of each class among the training galaxies of ``question`` (zeros when there are none)."""
    t = targets.loc[(targets["question"] == question) & (targets["split"] == "train"), "class"].to_numpy()
    counts = np.bincount(t[t >= 0], minlength=n_classes).astype(np.float64)[:n_classes]
    return counts / max(counts.sum(), 1.0)


@dataclass(frozen=True)
class TargetSpec:
    """How to read one question's class from a label table.

    Exactly one of ``answers`` (class name -> vote-fraction columns, with
    ``total_votes``) or ``column`` (a class column) is set.
    """

    name: str
    classes: tuple[str, ...]
    answers: tuple[tuple[str, ...], ...] | None = None
    total_votes: str | None = None
    column: str | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def target_specs(entries: Sequence[str | Mapping[str, Any]]) -> list[TargetSpec]:
    """Question specs from the config's ``classify.questions`` list.

    A string names a Galaxy Zoo DECaLS question; a mapping has ``name`` and either
    ``answers`` + ``total_votes`` or ``column`` (+ ``classes``). Raises ``ValueError``
    naming the entry on anything else.
    """
    specs: list[TargetSpec] = []
    for k, entry in enumerate(entries):
        where = f"classify.questions[{k}]"
        if isinstance(entry, str):
            if entry not in QUESTION_BY_NAME or QUESTION_BY_NAME[entry] not in QUESTIONS:
                known = ", ".join(q.name for q in QUESTIONS)
                raise ValueError(f"{where}: {entry!r} is not a Galaxy Zoo DECaLS question ({known})")
            q = QUESTION_BY_NAME[entry]
            specs.append(
                TargetSpec(
                    q.name,
                    tuple(q.class_names),
                    tuple(tuple(q.fraction_col(a) for a in answers) for _, answers in q.classes),
                    q.total_col,
                )
            )
        elif "answers" in entry:
            answers = dict(entry["answers"])
            if "total_votes" not in entry:
                raise ValueError(f"{where} ({entry['name']}): 'answers' needs 'total_votes', the vote-count column")
            specs.append(
                TargetSpec(
                    str(entry["name"]),
                    tuple(str(c) for c in answers),
                    tuple(tuple(str(c) for c in cols) for cols in answers.values()),
                    str(entry["total_votes"]),
                )
            )
        elif "column" in entry:
            classes = tuple(str(c) for c in entry.get("classes", ()))
            specs.append(TargetSpec(str(entry["name"]), classes, column=str(entry["column"])))
        else:
            raise ValueError(f"{where}: give a question name, or 'answers' + 'total_votes', or 'column'")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"classify.questions: question names repeat ({', '.join(names)})")
    return specs


def question_classes(
    labels: pd.DataFrame, spec: TargetSpec, min_votes: float, min_majority: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, TargetSpec]:
    """Class code (-1 where unused), winning vote fraction and vote count of one question per galaxy.

    Returns ``(classes, majority, votes, spec)``; for a class column whose ``classes``
    are not given, the spec comes back with the sorted distinct values as classes.
    """
    n = len(labels)
    if spec.column is not None:
        if spec.column not in labels:
            raise KeyError(f"question {spec.name!r}: the label table has no column {spec.column!r}")
        values = labels[spec.column]
        nan = np.full(n, np.nan)
        if pd.api.types.is_numeric_dtype(values):
            codes = values.to_numpy(dtype=float)
            ok = np.isfinite(codes) & (codes >= 0)
            classes = spec.classes or tuple(str(int(c)) for c in np.unique(codes[ok]))
            if not spec.classes:
                lookup = {int(c): i for i, c in enumerate(np.unique(codes[ok]))}
                out = np.array([lookup[int(c)] if o else -1 for c, o in zip(codes, ok, strict=True)], np.int64)
            else:
                out = np.where(ok, codes, -1).astype(np.int64)
                if (out >= len(classes)).any():
                    raise ValueError(
                        f"question {spec.name!r}: column {spec.column!r} has codes up to {out.max()}, "
                        f"but only {len(classes)} classes ({', '.join(classes)})"
                    )
        else:
            text = values.astype("string").fillna("").to_numpy(dtype=object)
            present = sorted({t for t in text if t})
            classes = spec.classes or tuple(present)
            unknown = sorted(set(present) - set(classes))
            if unknown:
                raise ValueError(
                    f"question {spec.name!r}: column {spec.column!r} has values {unknown} not in {classes}"
                )
            lookup = {c: i for i, c in enumerate(classes)}
            out = np.array([lookup.get(t, -1) for t in text], np.int64)
        return out, nan, nan, TargetSpec(spec.name, tuple(classes), column=spec.column)

    assert spec.answers is not None and spec.total_votes is not None
    missing = [c for c in (spec.total_votes, *[c for cols in spec.answers for c in cols]) if c not in labels]
    if missing:
        raise KeyError(f"question {spec.name!r}: the label table has no column(s) {', '.join(missing)}")
    votes = labels[spec.total_votes].to_numpy(dtype=float)
    frac = np.zeros((n, spec.n_classes))
    for k, cols in enumerate(spec.answers):
        for c in cols:
            frac[:, k] += np.nan_to_num(labels[c].to_numpy(dtype=float))
    majority = frac.max(axis=1)
    ok = np.isfinite(votes) & (votes >= max(min_votes, 1)) & (majority >= min_majority) & (majority > 0)
    out = np.where(ok, np.argmax(frac, axis=1), -1).astype(np.int64)
    return out, majority, votes, spec


def _question_seed(seed: int, name: str) -> np.random.SeedSequence:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest, "little")])


def stratified_split(
    ids: np.ndarray, classes: np.ndarray, seed: np.random.SeedSequence, val_fraction: float, test_fraction: float
) -> np.ndarray:
    """``train`` / ``val`` / ``test`` per galaxy, the same fractions in every class.

    Within each class the galaxies (sorted by id, so the input order does not
    matter) are shuffled and the first ``round(test_fraction * n)`` go to test,
    the next ``round(val_fraction * n)`` to val; a class of one galaxy is training only.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(ids), "train", dtype=object)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        members = members[np.argsort(ids[members].astype(str), kind="stable")]
        members = members[rng.permutation(len(members))]
        n = len(members)
        if n < 2:
            continue
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        split[members[:n_test]] = "test"
        split[members[n_test : n_test + n_val]] = "val"
    return split


def make_targets(
    labels: pd.DataFrame, specs: Sequence[TargetSpec], params: Mapping[str, Any], seed: int
) -> tuple[pd.DataFrame, list[TargetSpec]]:
    """The long targets table (:data:`TARGET_COLUMNS`) of every question, and the resolved specs."""
    if "id" not in labels:
        raise KeyError("the label table has no 'id' column")
    ids = labels["id"].astype(str).to_numpy(dtype=object)
    frames, resolved = [], []
    for spec in specs:
        cls, majority, votes, spec = question_classes(
            labels, spec, float(params["min_votes"]), float(params["min_majority"])
        )
        resolved.append(spec)
        use = cls >= 0
        split = stratified_split(
            ids[use],
            cls[use],
            _question_seed(seed, spec.name),
            float(params["val_fraction"]),
            float(params["test_fraction"]),
        )
        frames.append(
            pd.DataFrame(
                {
                    "id": ids[use],
                    "question": spec.name,
                    "class": cls[use],
                    "split": split,
                    "majority": majority[use],
                    "votes": votes[use],
                }
            )
        )
        counts = np.bincount(cls[use], minlength=spec.n_classes)
        log.info(
            "%s: %d of %d galaxies usable (%s)",
            spec.name,
            int(use.sum()),
            len(labels),
            ", ".join(f"{c} {k}" for c, k in zip(spec.classes, counts, strict=True)),
        )
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TARGET_COLUMNS)
    return table[TARGET_COLUMNS], resolved


def spec_table(specs: Sequence[TargetSpec]) -> pd.DataFrame:
    """The questions and their class names, in order (``question, class_index, class_name``)."""
    rows = [{"question": s.name, "class_index": k, "class_name": c} for s in specs for k, c in enumerate(s.classes)]
    return pd.DataFrame(rows, columns=["question", "class_index", "class_name"])


def class_names(spec_rows: pd.DataFrame) -> dict[str, list[str]]:
    """Question -> class names, from a :func:`spec_table`."""
    out: dict[str, list[str]] = {}
    for q, grp in spec_rows.groupby("question", sort=False):
        out[str(q)] = [str(c) for c in grp.sort_values("class_index")["class_name"]]
    return out


# --------------------------------------------------------------------------- random forest
def latent_matrix(latents: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Ids and the latent means (``mu_*`` columns) of a latents table."""
    from galmap.latent.outliers import latent_columns

    cols = latent_columns(latents)
    if not cols:
        raise KeyError("the latents table has no mu_* columns")
    return latents["id"].astype(str).to_numpy(dtype=object), latents[cols].to_numpy(dtype=np.float64)


def classification_forest(params: Mapping[str, Any], random_state: int, threads: int = 1):
    """The classification stage's random forest (``classify.rf``: ``n_estimators``, ``min_samples_leaf``,
    ``max_features``, optional ``class_weight``), unfitted; experiments vary these keys through ``params``."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=int(params["n_estimators"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        max_features=params["max_features"],
        class_weight=params.get("class_weight"),
        random_state=int(random_state),
        n_jobs=max(1, threads),
    )


def random_forest_predictions(
    targets: pd.DataFrame,
    latents: pd.DataFrame,
    params: Mapping[str, Any],
    seed: int,
    threads: int = 1,
    decision: str = "most_probable",
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Train one random forest per question on the training galaxies' latents; predict every used galaxy.

    ``decision`` turns the forest's class probabilities into its answer (:func:`decide`).

    Returns the predictions (:data:`PREDICTION_COLUMNS`) and ``(id, reason)`` for
    galaxies of the targets that have no finite latents (they get no prediction).
    """
    ids, z = latent_matrix(latents)
    row = {gid: i for i, gid in enumerate(ids)}
    finite = np.isfinite(z).all(axis=1)
    failures: list[tuple[str, str]] = []
    parts = []
    for q, grp in targets.groupby("question", sort=False):
        idx = np.array([row.get(g, -1) for g in grp["id"]])
        ok = idx >= 0
        ok[ok] = finite[idx[ok]]
        for gid, has in zip(grp["id"], idx >= 0, strict=True):
            if not has:
                failures.append((gid, f"classify ({q}): no latents for this galaxy"))
        for gid in grp["id"][(idx >= 0) & ~ok]:
            failures.append((gid, f"classify ({q}): non-finite latents"))
        grp, idx = grp[ok], idx[ok]
        train = (grp["split"] == "train").to_numpy()
        y = grp["class"].to_numpy()
        if train.sum() == 0 or len(np.unique(y[train])) < 2:
            why = f"classify ({q}): no forest, fewer than two classes among {int(train.sum())} training galaxies"
            log.warning("%s", why)
            failures += [(gid, why) for gid in grp["id"]]
            continue
        rf = classification_forest(params, int(_question_seed(seed, f"rf:{q}").generate_state(1)[0]), threads)
        rf.fit(z[idx[train]], y[train])
        proba = rf.predict_proba(z[idx])
        prior = np.array([np.mean(y[train] == c) for c in rf.classes_])
        pred = rf.classes_[decide(proba, prior, decision)]
        parts.append(
            pd.DataFrame(
                {
                    "id": grp["id"].to_numpy(),
                    "question": q,
                    "split": grp["split"].to_numpy(),
                    "true_class": y,
                    "pred_class": pred.astype(np.int64),
                    "confidence": proba[np.arange(len(pred)), np.searchsorted(rf.classes_, pred)],
                }
            )
        )
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return table[PREDICTION_COLUMNS], failures


# --------------------------------------------------------------------------- metrics
METRIC_COLUMNS = [
    "question", "n_classes", "model", "n_train", "n_test", "accuracy", "chance_accuracy", "balanced_accuracy",
    "chance_balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
    "recall_weighted", "f1_weighted",
]  # fmt: skip


def score_predictions(
    predictions: Mapping[str, pd.DataFrame], targets: pd.DataFrame, classes: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics on the test split per question and model, and the confusion matrices.

    ``predictions``: model name -> prediction table. Precision, recall and F1 are
    given macro-averaged (every class counts the same) and weighted by class support;
    ``chance_accuracy`` is the test accuracy of always answering the training set's
    most common class. ``balanced_accuracy`` is the mean recall over the classes present in
    the test split (:func:`galmap.core.stats.balanced_accuracy`), where answering one class
    always scores ``chance_balanced_accuracy`` = 1 / (number of classes present). Returns
    ``(metrics, confusion)``; ``confusion`` is long: ``question, model, true_class, pred_class, count``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rows, conf = [], []
    for q, names in classes.items():
        t = targets[targets["question"] == q]
        n_train = int((t["split"] == "train").sum())
        train_counts = np.bincount(t.loc[t["split"] == "train", "class"], minlength=len(names))
        test_true = t.loc[t["split"] == "test", "class"].to_numpy()
        chance = float(np.mean(test_true == np.argmax(train_counts))) if len(test_true) else np.nan
        for model, pred in predictions.items():
            p = pred[(pred["question"] == q) & (pred["split"] == "test")]
            row = {"question": q, "n_classes": len(names), "model": model, "n_train": n_train, "n_test": len(p)}
            row["chance_accuracy"] = chance
            if len(p):
                yt, yp = p["true_class"].to_numpy(), p["pred_class"].to_numpy()
                labels = list(range(len(names)))
                row["accuracy"] = float(accuracy_score(yt, yp))
                row["balanced_accuracy"] = balanced_accuracy(yt, yp)
                row["chance_balanced_accuracy"] = 1.0 / len(np.unique(yt))
                for avg in ("macro", "weighted"):
                    pr, rc, f1, _ = precision_recall_fscore_support(yt, yp, labels=labels, average=avg, zero_division=0)
                    row |= {f"precision_{avg}": pr, f"recall_{avg}": rc, f"f1_{avg}": f1}
                cm = confusion_matrix(yt, yp, labels=labels)
                for i in labels:
                    for j in labels:
                        conf.append(
                            {"question": q, "model": model, "true_class": names[i], "pred_class": names[j],
                             "count": int(cm[i, j])}
                        )  # fmt: skip
            rows.append(row)
    metrics = pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS)
    confusion = pd.DataFrame(conf, columns=["question", "model", "true_class", "pred_class", "count"])
    return metrics, confusion


COMPARISON_COLUMNS = [
    "question", "model_a", "model_b", "n_test", "metric", "value_a", "value_b", "difference", "difference_lo68",
    "difference_hi68",
]  # fmt: skip


def compare_models(
    predictions: Mapping[str, pd.DataFrame], model_a: str, model_b: str, seed: int, n_resamples: int = 1000
) -> pd.DataFrame:
    """``model_b − model_a`` per question on their common test galaxies, with the paired bootstrap 68 % interval.

    For balanced accuracy and accuracy (:data:`COMPARISON_COLUMNS`, one row per question and
    metric): both models are scored on the same resampled galaxies
    (:func:`galmap.core.stats.bootstrap_interval`, ``n_resamples``, seeded from ``seed`` and
    the question), so the interval is that of the difference, not of either model.
    """
    metrics = {"balanced_accuracy": balanced_accuracy, "accuracy": lambda t, p: float(np.mean(t == p))}
    a, b = predictions[model_a], predictions[model_b]
    rows = []
    for q in a["question"].drop_duplicates():
        pa = a[(a["question"] == q) & (a["split"] == "test")].set_index("id")
        pb = b[(b["question"] == q) & (b["split"] == "test")].set_index("id")
        common = pa.index.intersection(pb.index)
        true = pa.loc[common, "true_class"].to_numpy()
        ya, yb = pa.loc[common, "pred_class"].to_numpy(), pb.loc[common, "pred_class"].to_numpy()
        for name, score in metrics.items():
            va, vb = (score(true, ya), score(true, yb)) if len(common) else (np.nan, np.nan)
            lo, hi = bootstrap_interval(
                lambda i, s=score, t=true, a=ya, b=yb: s(t[i], b[i]) - s(t[i], a[i]),
                len(common),
                _question_seed(seed, f"compare:{q}:{name}"),
                n_resamples,
            )
            rows.append(
                {"question": q, "model_a": model_a, "model_b": model_b, "n_test": len(common), "metric": name,
                 "value_a": va, "value_b": vb, "difference": vb - va, "difference_lo68": lo, "difference_hi68": hi}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
