"""Benchmark: what a kill costs at each point of the pipeline, and whether the rerun gives the same outputs.

Run: ``.venv/bin/python benchmarks/faults.py [--workdir DIR] [--points render sersic vae_train figure]
[--signals KILL TERM]``

Needs a finished run of ``config/test.yaml`` (``--workdir``; without it one is made in a scratch directory,
about as long as the test pipeline). For every point (a job of one rule) and signal:

1. *uninterrupted*: in a fresh copy of the finished run, force that job to run again (``--forcerun RULE``,
   targeting only its outputs) and time it;
2. *killed*: in another copy, start the same, wait until the job is visibly at work (its log file or, for
   training, its first checkpoint), send the signal to Snakemake's process group, then rerun with
   ``--rerun-incomplete`` to completion (after ``--unlock`` where the kill left Snakemake's lock: SIGKILL).

It prints per case the seconds until the kill, of the rerun, and the cost of the kill, ``killed + rerun -
uninterrupted`` (the recomputation the kill caused, plus a second start of Snakemake and Python); whether the
rerun resumed from a checkpoint; whether any partially written file was left under a final name; and
whether every output equals the uninterrupted run's (bit-identical arrays, tables and weights). The last line
is machine-readable.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.interrupt import copy_run, kill_when, partial_files, rerun, snakemake, write_config  # noqa: E402

SURVEYS = ("decals", "bass", "mzls", "euclid", "sdss", "halpha")
# point: (rule, outputs, the sign that the job is at work (a path relative to the run), longer settings);
# training is killed as soon as its first checkpoint is there (40 tiny epochs take ~1 s on an idle core), the
# others 1 s after their log file appears
POINTS = {
    "render": (
        "mock_render",
        [f"data/mock/{s}/shard-0001.h5" for s in SURVEYS] + ["results/data/shards/failures-0001.csv"],
        "logs/data/render-0001.log",
        {},
    ),
    "sersic": (
        "sersic",
        ["results/structure/shards/sersic-0000.parquet", "results/structure/shards/sersic-failures-0000.csv"],
        "logs/structure/sersic-0000.log",
        {},
    ),
    "vae_train": (
        "vae_train",
        ["results/vae/z4/model.pt", "results/vae/z4/history.csv"],
        "results/vae/z4/checkpoint.pt",
        {"vae.max_epochs": 40, "vae.patience": 40},
    ),
    "figure": (
        "figure_vae",
        ["results/figures/vae.pdf", "results/figures/vae.png"],
        "logs/figures/vae.log",
        {},
    ),
}
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


def same_file(a: Path, b: Path) -> bool:
    """Whether two outputs hold the same data (arrays, tables, weights; other files byte for byte)."""
    if a.suffix == ".h5":
        from galmap.core.io import read_shard

        x, y = read_shard(a), read_shard(b)
        return bool(np.array_equal(x.images, y.images, equal_nan=True) and np.array_equal(x.ivar, y.ivar))
    if a.suffix == ".parquet":
        return pd.read_parquet(a).equals(pd.read_parquet(b))
    if a.name == "history.csv":  # wall-clock columns differ from run to run
        x, y = pd.read_csv(a), pd.read_csv(b)
        cols = [c for c in x.columns if c not in ("seconds", "images_per_s")]
        return x[cols].equals(y[cols])
    if a.suffix == ".pt":
        import torch

        x = torch.load(a, weights_only=True)["state_dict"]
        y = torch.load(b, weights_only=True)["state_dict"]
        return all(torch.equal(v, y[k]) for k, v in x.items())
    return a.read_bytes() == b.read_bytes()


def measure(base: Path, scratch: Path, point: str, sig_name: str) -> dict:
    rule, outputs, sign, changes = POINTS[point]
    config = write_config(scratch / f"{point}.yaml", changes)
    args = [*outputs, "--cores", "1", "--configfile", config]  # targets first: --configfile takes several
    force = [*args, "--forcerun", rule] if not changes else args
    ref = copy_run(base, scratch / f"{point}-{sig_name}-ref")
    _, t_full = snakemake(force, ref)
    run = copy_run(base, scratch / f"{point}-{sig_name}-killed")
    sign_path = run / sign
    sign_path.unlink(missing_ok=True)
    # the job has started once its log (or checkpoint) exists; 1 s later it is at work (a figure's log stays empty)
    delay = 0.0 if rule == "vae_train" else 1.0
    t_kill = kill_when(force, run, sign_path.exists, SIGNALS[sig_name], delay_s=delay)
    left = [str(p.relative_to(run)) for p in partial_files(run) if "checkpoint" not in p.name]
    under_final = []
    for name in outputs:
        path = run / name
        if path.exists():
            try:
                same_file(path, path)
            except Exception:  # noqa: BLE001 - any unreadable output under its final name is a finding
                under_final.append(name)
    locked = (run / ".snakemake/locks").is_dir() and any((run / ".snakemake/locks").iterdir())
    t_rerun = rerun(args, run)
    resumed = None
    if rule == "vae_train":
        resumed = "resuming from the checkpoint" in (run / "logs/vae/train-z4.log").read_text()
    identical = all(same_file(ref / name, run / name) for name in outputs)
    return {
        "point": point,
        "signal": sig_name,
        "uninterrupted_s": round(t_full, 1),
        "killed_after_s": round(t_kill, 1),
        "rerun_s": round(t_rerun, 1),
        "kill_cost_s": round(t_kill + t_rerun - t_full, 1),
        "resumed_from_checkpoint": resumed,
        "lock_left": locked,
        "temp_files_left": left,
        "broken_under_final_name": under_final,
        "identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="a finished run of config/test.yaml (default: make one)")
    parser.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS))
    parser.add_argument("--signals", nargs="+", default=list(SIGNALS), choices=list(SIGNALS))
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="galmap-faults-") as tmp:
        scratch = Path(tmp)
        base = opts.workdir
        if base is None:
            base = scratch / "base"
            base.mkdir()
            _, t = snakemake(["--cores", "2", "--configfile", write_config(scratch / "test.yaml"), "-q"], base)
            print(f"finished run of config/test.yaml: {t:.0f} s")
        rows = []
        for point in opts.points:
            for sig_name in opts.signals:
                rows.append(measure(base.resolve(), scratch, point, sig_name))
                print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    cols = ["point", "signal", "uninterrupted_s", "killed_after_s", "rerun_s", "kill_cost_s",
            "resumed_from_checkpoint", "lock_left", "identical"]  # fmt: skip
    print(frame[cols].to_string(index=False))
    for row in rows:
        if row["temp_files_left"] or row["broken_under_final_name"]:
            print(f"{row['point']} {row['signal']}: temporary files left {row['temp_files_left']}, "
                  f"broken under final name {row['broken_under_final_name']}")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
