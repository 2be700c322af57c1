"""Are two runs' metrics tables identical? The check that a refactoring changed no number.

Compares, between two run directories, every metrics table the default run writes
(``results/**/metrics.csv``, ``results/vae/ssim_vs_latents.csv``,
``results/flow/closure_spearman.csv``, ``results/structure/*.parquet``), column by
column and bit for bit, except the throughput columns (``*_images_per_s``), which
measure the machine.

Usage::

    python benchmarks/compare_runs.py RUN_A RUN_B

Prints one line per table (``identical`` or what differs) and, last, ``compare_runs
identical=<n> different=<n> missing=<n>``; exits 1 when any table differs or is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PATTERNS = (
    "results/**/metrics.csv",
    "results/vae/ssim_vs_latents.csv",
    "results/flow/closure_spearman.csv",
    "results/structure/*.parquet",
)


def read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """What differs between two tables (empty: identical apart from throughput columns)."""
    keep = lambda cols: [c for c in cols if not str(c).endswith("_images_per_s")]  # noqa: E731
    if keep(a.columns) != keep(b.columns):
        return [f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"]
    if len(a) != len(b):
        return [f"{len(a)} rows vs {len(b)}"]
    out = []
    for col in keep(a.columns):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind in "fc" and y.dtype.kind in "fc":
            same = np.array_equal(x, y, equal_nan=True)
            if not same:
                diff = np.nanmax(np.abs(x.astype(float) - y.astype(float)))
                out.append(f"{col}: max |difference| {diff:.3g}")
        elif not a[col].equals(b[col]):
            out.append(f"{col}: values differ")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    tables = sorted({p.relative_to(args.run_a) for pat in PATTERNS for p in args.run_a.glob(pat)})
    counts = {"identical": 0, "different": 0, "missing": 0}
    for rel in tables:
        other = args.run_b / rel
        if not other.exists():
            print(f"{rel}: missing in {args.run_b}")
            counts["missing"] += 1
            continue
        problems = compare(read(args.run_a / rel), read(other))
        counts["different" if problems else "identical"] += 1
        print(f"{rel}: " + ("identical" if not problems else "; ".join(problems)))
    print("compare_runs " + " ".join(f"{k}={v}" for k, v in counts.items()))
    sys.exit(1 if counts["different"] or counts["missing"] else 0)


if __name__ == "__main__":
    main()
