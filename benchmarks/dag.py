"""Benchmark: how long ``snakemake -n`` takes to build the DAG as the number of shards grows.

Run: ``.venv/bin/python benchmarks/dag.py [--shards 10 100 1000] [--shard-size 12] [--repeats 1]``

For each shard count, writes the embedded default config with ``shard_size`` and ``mock.n_galaxies = shards *
shard_size`` to a scratch config file (``--config`` turns nested values into strings, which the schema refuses)
and times a dry run (``snakemake -n -q``, SLURM_CONF=/dev/null so that an installed SLURM plugin does not
stall the start) in a scratch directory, i.e. the whole DAG from scratch: every per-shard job of every stage.
Prints the jobs a cluster executor would submit per rule (at the largest shard count), then per shard count the
jobs in the DAG, the seconds, and the ratio to the first (baseline) shard count measured in the same run. The last
line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def local_rules() -> set[str]:
    """Rules that run on the submitting node (``localrule: True``), and ``all`` (no job of its own)."""
    names = {"all"}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        names |= {name for name, body in zip(blocks[1::2], blocks[2::2], strict=True) if "localrule: True" in body}
    return names


def dry_run(shards: int, shard_size: int, workdir: Path) -> tuple[float, int, Counter]:
    """Seconds for ``snakemake -n`` of the default DAG with ``shards`` shards, the number of jobs, and the jobs
    per rule."""
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
    out = proc.stdout + proc.stderr
    total = re.search(r"^total\s+(\d+)", out, flags=re.M)
    return seconds, int(total.group(1)) if total else -1, Counter(re.findall(r"^rule (\w+):", out, flags=re.M))


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
            seconds, jobs, submitted = min(runs, key=lambda run: run[0])
            results.append((shards, jobs, seconds))
    base = results[0][2]
    local = local_rules()
    cluster = {rule: n for rule, n in submitted.items() if rule not in local}
    print(f"at {args.shards[-1]} shards a cluster executor submits {sum(cluster.values())} of the {jobs} jobs:")
    print("  " + ", ".join(f"{rule} {n}" for rule, n in sorted(cluster.items(), key=lambda kv: (-kv[1], kv[0]))))
    print(f"  the other {jobs - sum(cluster.values())} are local (gathers, summaries, figures, the target `all`)")
    print(f"{'shards':>7} {'jobs':>7} {'seconds':>8} {'ratio':>6}")
    for shards, jobs, seconds in results:
        print(f"{shards:>7} {jobs:>7} {seconds:>8.2f} {seconds / base:>6.2f}")
    print("dag " + " ".join(f"shards={s}:jobs={j}:s={t:.2f}:ratio={t / base:.2f}" for s, j, t in results))


if __name__ == "__main__":
    main()
