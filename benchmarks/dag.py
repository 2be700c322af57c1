"""Benchmark: how long ``snakemake -n`` takes to build the DAG as the number of shards grows.

Run: ``.venv/bin/python benchmarks/dag.py [--shards 10 100 1000] [--shard-size 12] [--repeats 1]``

For each shard count, writes the embedded default config with ``shard_size`` and ``mock.n_galaxies = shards *
shard_size`` to a scratch config file (``--config`` turns nested values into strings, which the schema refuses)
and times a dry run (``snakemake -n -q``, SLURM_CONF=/dev/null so that an installed SLURM plugin does not
stall the start) in a scratch directory, i.e. the whole DAG from scratch: every per-shard job of every stage.
Prints the jobs in the DAG, the seconds, and the ratio to the first (baseline) shard count measured in the same
run. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def dry_run(shards: int, shard_size: int, workdir: Path) -> tuple[float, int]:
    """Seconds for ``snakemake -n`` of the default DAG with ``shards`` shards, and the number of jobs."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["shard_size"] = shard_size
    config["mock"]["n_galaxies"] = shards * shard_size
    path = workdir / f"config-{shards}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile", str(path)]
    env = dict(os.environ, SLURM_CONF="/dev/null")
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {shards} shards:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, flags=re.M)
    return seconds, int(total.group(1)) if total else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[10, 100, 1000], help="shard counts; first = baseline")
    ap.add_argument("--shard-size", type=int, default=12, help="galaxies per shard")
    ap.add_argument("--repeats", type=int, default=1, help="dry runs per shard count (the fastest is kept)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="galmap-dag-") as tmp:
        for shards in args.shards:
            runs = [dry_run(shards, args.shard_size, Path(tmp)) for _ in range(args.repeats)]
            seconds, jobs = min(runs)
            results.append((shards, jobs, seconds))
    base = results[0][2]
    print(f"{'shards':>7} {'jobs':>7} {'seconds':>8} {'ratio':>6}")
    for shards, jobs, seconds in results:
        print(f"{shards:>7} {jobs:>7} {seconds:>8.2f} {seconds / base:>6.2f}")
    print("dag " + " ".join(f"shards={s}:jobs={j}:s={t:.2f}:ratio={t / base:.2f}" for s, j, t in results))


if __name__ == "__main__":
    main()
