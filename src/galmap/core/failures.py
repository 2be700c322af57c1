"""The failures table: every galaxy a stage could not process, and why.

Each stage writes ``<stage>/failures.csv`` with columns ``id, stage, reason``
(an empty table with those columns when nothing failed), so no galaxy is ever
silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from galmap.core.io import write_table

COLUMNS = ["id", "stage", "reason"]


@dataclass
class FailureLog:
    """Collects failures of one stage; ``write`` saves them as ``failures.csv``."""

    stage: str
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, galaxy_id: str, reason: str) -> None:
        self.rows.append({"id": str(galaxy_id), "stage": self.stage, "reason": str(reason)})

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)

    def write(self, path: str | Path) -> None:
        write_table(path, self.frame())


def gather_failures(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate per-shard failure tables (CSV) into one, keeping the column order."""
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]
