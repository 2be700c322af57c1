"""Shared helper of the experiments that choose a setting on a validation split (issue 31)."""

from __future__ import annotations

import dataclasses

import numpy as np


def score_on_validation(data, max_galaxies: int | None = None, seed: int = 0):
    """``data`` (a stage's paired data with a ``split`` array) relabelled so that the stage's own evaluation,
    which scores the ``"test"`` galaxies, scores the validation galaxies instead; the test galaxies become
    ``"unused"`` (never read). ``max_galaxies``: only a seeded random subset of that many validation galaxies
    is scored (the rest become ``"unused"`` too)."""
    split = np.asarray(data.split, dtype=object)
    if not (split == "val").any():
        raise ValueError("no validation galaxy (raise val_fraction)")
    val = split == "val"
    if max_galaxies is not None and val.sum() > max_galaxies:
        keep = np.random.default_rng(seed).choice(np.flatnonzero(val), max_galaxies, replace=False)
        val = np.isin(np.arange(len(split)), keep)
    relabelled = np.where(val, "test", np.where((split == "test") | (split == "val"), "unused", split)).astype(object)
    return dataclasses.replace(data, split=relabelled)
