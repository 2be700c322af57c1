"""The same galaxies in every survey: preprocessed stamps paired by galaxy id, missing surveys masked.

Each survey's shards (``results/images/<survey>/shard-NNNN.h5``) are read as network
inputs (:func:`galmap.nn.inputs.shard_inputs`: the asinh scale and the noise weights) and
put on one list of galaxies, the union of all surveys' ids in the order of the first
survey. A galaxy without a stamp in a survey, or whose stamp there has no valid pixel, has
``avail = 0`` there, zero inputs and zero weights: the model ignores it (it neither adds an
expert nor a term of the loss). Splits come from a hash of (seed, id)
(:func:`galmap.nn.inputs.assign_split`), so they do not depend on the shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard
from galmap.nn.inputs import assign_split, shard_inputs


@dataclass
class SurveyStack:
    """Every galaxy's inputs in every survey: ``x[s]``, ``w[s]`` (N, B_s, H_s, W_s), ``avail`` (N, S)."""

    ids: np.ndarray
    split: np.ndarray
    surveys: list[str]
    x: dict[str, torch.Tensor]
    w: dict[str, torch.Tensor]
    avail: torch.Tensor
    attrs: dict[str, dict] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def shapes(self) -> dict[str, dict[str, int]]:
        """Survey -> ``{"bands", "size"}`` (the :class:`~galmap.unified.model.UnifiedVAE` argument)."""
        return {s: {"bands": int(self.x[s].shape[1]), "size": int(self.x[s].shape[-1])} for s in self.surveys}

    def tensors(self) -> list[torch.Tensor]:
        """``x_1, w_1, ..., x_S, w_S, avail``: the batch layout of :func:`galmap.unified.model.make_step`."""
        return [t for s in self.surveys for t in (self.x[s], self.w[s])] + [self.avail]

    def has(self, survey: str) -> np.ndarray:
        """Boolean (N,): the galaxies with a usable stamp in ``survey``."""
        return self.avail[:, self.surveys.index(survey)].numpy() > 0

    def select(self, keep: np.ndarray) -> SurveyStack:
        """The galaxies where the boolean ``keep`` is true."""
        idx = torch.as_tensor(np.flatnonzero(keep))
        return SurveyStack(
            self.ids[keep],
            self.split[keep],
            list(self.surveys),
            {s: v[idx] for s, v in self.x.items()},
            {s: v[idx] for s, v in self.w.items()},
            self.avail[idx],
            self.attrs,
        )


def load_surveys(
    paths: Mapping[str, Sequence[str]],
    seed: int,
    val_fraction: float,
    test_fraction: float,
    sys_error: float,
    failures: FailureLog | None = None,
) -> SurveyStack:
    """Read each survey's preprocessed shards (``paths``: survey -> shard files) and pair them by id.

    A galaxy missing from a survey or without a valid pixel there gets a row in ``failures``
    (it is kept, with that survey masked); a galaxy with no usable stamp in any survey is
    left out with a row saying so. Raises ``ValueError`` when no galaxy is left.
    """
    surveys = list(paths)
    if not surveys:
        raise ValueError("unified: no survey given")
    per: dict[str, tuple[torch.Tensor, torch.Tensor, dict[str, int], dict]] = {}
    order: dict[str, None] = {}
    for s in surveys:
        if not paths[s]:
            raise ValueError(f"unified: survey {s!r} has no shard")
        parts = [
            shard_inputs(read_shard(p, datasets=()), seed, val_fraction, test_fraction, sys_error) for p in paths[s]
        ]
        x = torch.cat([p.x for p in parts])
        w = torch.cat([p.w for p in parts])
        ids = [str(g) for p in parts for g in p.ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unified: survey {s!r} has a galaxy id twice in its shards")
        per[s] = (x, w, {g: i for i, g in enumerate(ids)}, dict(parts[0].attrs))
        order.update(dict.fromkeys(ids))
    all_ids = list(order)
    n = len(all_ids)
    xs, ws, avail = {}, {}, torch.zeros(n, len(surveys))
    for j, s in enumerate(surveys):
        x, w, index, _ = per[s]
        rows = np.array([index.get(g, -1) for g in all_ids])
        has = rows >= 0
        xs[s] = torch.zeros((n, *x.shape[1:]), dtype=x.dtype)
        ws[s] = torch.zeros((n, *w.shape[1:]), dtype=w.dtype)
        src = torch.as_tensor(rows[has])
        dst = torch.as_tensor(np.flatnonzero(has))
        xs[s][dst] = x[src]
        ws[s][dst] = w[src]
        valid = (ws[s] > 0).flatten(1).any(1).numpy()
        avail[:, j] = torch.as_tensor(valid, dtype=avail.dtype)
        if failures is not None:
            for g, h, v in zip(all_ids, has, valid, strict=True):
                if not h:
                    failures.add(g, f"unified: not in the {s} shards (that survey masked)")
                elif not v:
                    failures.add(g, f"unified: no valid pixel in the {s} stamp (that survey masked)")
    some = avail.sum(1).numpy() > 0
    if failures is not None:
        for g in np.asarray(all_ids, dtype=object)[~some]:
            failures.add(g, "unified: no usable stamp in any survey (left out)")
    if not some.any():
        raise ValueError(f"unified: no galaxy has a usable stamp in any of {surveys}")
    ids = np.asarray(all_ids, dtype=object)
    split = assign_split(list(ids), seed, val_fraction, test_fraction)
    stack = SurveyStack(ids, split, surveys, xs, ws, avail, {s: per[s][3] for s in surveys})
    return stack.select(some)
