"""Jobs shared by every stage: shard rows, gathering per-shard tables and failures.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from galmap.core.failures import gather_failures
from galmap.core.io import read_table, write_table


def gather_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard tables (Parquet) into one."""
    frames = [read_table(p) for p in paths]
    write_table(out_path, pd.concat(frames, ignore_index=True))


def gather_failure_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard ``failures`` tables into one stage table."""
    write_table(out_path, gather_failures(paths))
