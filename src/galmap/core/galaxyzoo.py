"""Galaxy Zoo DECaLS questions, answers and the class rules of the paper's table.

Vote columns follow the Galaxy Zoo DECaLS (DR5) catalog exactly:
``{question}_{answer}`` (vote counts), ``{question}_{answer}_fraction`` and
``{question}_total-votes``. The same code turns the mock's simulated votes and a
real catalog into one integer class column per question, ``{question}_class``,
with -1 where the question does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

ROOT_QUESTION = "smooth-or-featured"


@dataclass(frozen=True)
class Question:
    """One decision-tree question.

    Attributes
    ----------
    name : the Galaxy Zoo column prefix (``bar``).
    answers : every answer of the question, in catalog order.
    parent : ``(question, answer)`` whose voters are asked this question; ``None``
        for the root. ``merging`` is asked of everyone who did not flag an artefact.
    classes : class name -> answers grouped into it (the paper's table); answers in
        no group (``cant-tell``) do not vote for any class.
    """

    name: str
    answers: tuple[str, ...]
    parent: tuple[str, tuple[str, ...]] | None
    classes: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def class_names(self) -> list[str]:
        return [c for c, _ in self.classes]

    def count_col(self, answer: str) -> str:
        return f"{self.name}_{answer}"

    def fraction_col(self, answer: str) -> str:
        return f"{self.name}_{answer}_fraction"

    @property
    def total_col(self) -> str:
        return f"{self.name}_total-votes"

    @property
    def class_col(self) -> str:
        return f"{self.name}_class"


def _same(*answers: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((a, (a,)) for a in answers)


#: The root question (not one of the nine, but it gates them).
SMOOTH_OR_FEATURED = Question(
    ROOT_QUESTION,
    ("smooth", "featured-or-disk", "artifact"),
    None,
    _same("smooth", "featured-or-disk", "artifact"),
)

#: The nine questions of the paper's table, with its class groupings.
QUESTIONS: tuple[Question, ...] = (
    Question(
        "how-rounded",
        ("round", "in-between", "cigar-shaped"),
        (ROOT_QUESTION, ("smooth",)),
        _same("round", "in-between", "cigar-shaped"),
    ),
    Question("disk-edge-on", ("yes", "no"), (ROOT_QUESTION, ("featured-or-disk",)), _same("yes", "no")),
    Question(
        "edge-on-bulge",
        ("boxy", "none", "rounded"),
        ("disk-edge-on", ("yes",)),
        _same("boxy", "none", "rounded"),
    ),
    Question("bar", ("strong", "weak", "no"), ("disk-edge-on", ("no",)), _same("strong", "weak", "no")),
    Question("has-spiral-arms", ("yes", "no"), ("disk-edge-on", ("no",)), _same("yes", "no")),
    Question(
        "spiral-winding",
        ("tight", "medium", "loose"),
        ("has-spiral-arms", ("yes",)),
        _same("tight", "medium", "loose"),
    ),
    Question(
        "spiral-arm-count",
        ("1", "2", "3", "4", "more-than-4", "cant-tell"),
        ("has-spiral-arms", ("yes",)),
        (("1", ("1",)), ("2", ("2",)), ("3", ("3",)), ("4+", ("4", "more-than-4"))),
    ),
    Question(
        "bulge-size",
        ("dominant", "large", "moderate", "small", "none"),
        ("disk-edge-on", ("no",)),
        (
            ("dominant/large", ("dominant", "large")),
            ("moderate", ("moderate",)),
            ("small", ("small",)),
            ("none", ("none",)),
        ),
    ),
    Question(
        "merging",
        ("none", "minor-disturbance", "major-disturbance", "merger"),
        (ROOT_QUESTION, ("smooth", "featured-or-disk")),
        (("merger/disturbed", ("merger", "major-disturbance", "minor-disturbance")), ("none", ("none",))),
    ),
)

ALL_QUESTIONS: tuple[Question, ...] = (SMOOTH_OR_FEATURED, *QUESTIONS)
QUESTION_BY_NAME: dict[str, Question] = {q.name: q for q in ALL_QUESTIONS}


def vote_columns(question: Question) -> list[str]:
    """The catalog columns of one question: counts, fractions and total votes."""
    cols = [question.total_col]
    for a in question.answers:
        cols += [question.count_col(a), question.fraction_col(a)]
    return cols


def votes_to_frame(counts: Mapping[str, np.ndarray], ids: np.ndarray) -> pd.DataFrame:
    """Build the Galaxy Zoo style vote table from vote counts.

    Parameters
    ----------
    counts : question name -> int array (N, n_answers) of vote counts.
    ids : galaxy ids (N,).
    """
    data: dict[str, np.ndarray] = {"id": np.asarray(ids)}
    for q in ALL_QUESTIONS:
        c = np.asarray(counts[q.name])
        total = c.sum(axis=1)
        data[q.total_col] = total
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total[:, None] > 0, c / np.maximum(total[:, None], 1), np.nan)
        for j, a in enumerate(q.answers):
            data[q.count_col(a)] = c[:, j]
            data[q.fraction_col(a)] = frac[:, j]
    return pd.DataFrame(data)


def classes_from_votes(votes: pd.DataFrame, min_reached: float = 0.5) -> pd.DataFrame:
    """Majority-vote class per question, -1 where the question does not apply.

    A question applies to a galaxy when at least ``min_reached`` of the volunteers
    who answered the root question were asked it (its ``total-votes`` is at least
    that fraction of the root's). The class is the group of answers (the paper's
    table) with the largest summed vote fraction. Works on the mock's votes and on
    real Galaxy Zoo DECaLS catalogs (which only need the ``_fraction`` and
    ``_total-votes`` columns).

    Returns
    -------
    DataFrame with one integer column ``{question}_class`` per question of
    :data:`QUESTIONS`; class codes index ``Question.class_names``.
    """
    root_total = votes[SMOOTH_OR_FEATURED.total_col].to_numpy(dtype=float)
    out = {}
    for q in QUESTIONS:
        if q.total_col not in votes:
            raise KeyError(f"vote table has no column {q.total_col!r} for question {q.name!r}")
        total = votes[q.total_col].to_numpy(dtype=float)
        group_frac = np.zeros((len(votes), len(q.classes)))
        for k, (_, answers) in enumerate(q.classes):
            for a in answers:
                col = q.fraction_col(a)
                if col not in votes:
                    raise KeyError(f"vote table has no column {col!r} for question {q.name!r}")
                group_frac[:, k] += np.nan_to_num(votes[col].to_numpy(dtype=float))
        applies = (total > 0) & (total >= min_reached * root_total) & (group_frac.sum(axis=1) > 0)
        cls = np.where(applies, np.argmax(group_frac, axis=1), -1)
        out[q.class_col] = cls.astype(np.int64)
    return pd.DataFrame(out, index=votes.index)


def class_counts(labels: pd.DataFrame) -> pd.DataFrame:
    """Number of galaxies per class of each question (long format: question, class, count)."""
    rows = []
    for q in QUESTIONS:
        col = labels[q.class_col].to_numpy()
        for k, name in enumerate(q.class_names):
            rows.append({"question": q.name, "class": name, "count": int(np.sum(col == k))})
        rows.append({"question": q.name, "class": "(not applicable)", "count": int(np.sum(col < 0))})
    return pd.DataFrame(rows)
