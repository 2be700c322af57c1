"""What every workflow job pays before it starts: importing its stage's ``galmap.<stage>.jobs``.

Each Snakemake job is a new Python process that imports its stage's jobs module;
its stages import their own libraries (torch, GalSim, photutils, statmorph) inside
their functions. Times, in fresh processes, the import of ``galmap.latent.jobs`` (the largest)
against ``pandas`` alone (the baseline: every job reads or writes a table), and
of each stage library for scale.

Usage::

    python benchmarks/imports.py [--repeat 5]

The last line is machine-readable: ``RESULT jobs_over_pandas=...``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

MODULES = ["pandas", "galmap.latent.jobs", "torch", "galsim", "photutils.segmentation", "statmorph"]


def import_seconds(module: str, repeat: int) -> float:
    """Median wall time (s) of ``python -c 'import module'`` minus that of an empty interpreter."""

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t0

    empty = statistics.median(run("pass") for _ in range(repeat))
    return statistics.median(run(f"import {module}") for _ in range(repeat)) - empty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    times = {m: import_seconds(m, args.repeat) for m in MODULES}
    for m, t in times.items():
        print(f"  import {m:24s} {t:6.2f} s   {t / times['pandas']:5.2f} x pandas")
    print(f"RESULT jobs_over_pandas={times['galmap.latent.jobs'] / times['pandas']:.2f}")


if __name__ == "__main__":
    main()
