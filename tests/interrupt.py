"""Interrupting Snakemake runs on purpose: copy a finished run, start a job, kill it at a chosen point, rerun.

Shared by ``tests/workflow/test_interrupts.py`` (a representative subset) and ``benchmarks/faults.py`` (the full
kill matrix with the seconds each kill costs). Snakemake runs in its own process group
(``start_new_session=True``) and the whole group is signalled, as a scheduler or Ctrl-C would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
ENV = dict(os.environ, SLURM_CONF="/dev/null")  # no SLURM plugin stall on local runs


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run directory (times kept, so Snakemake sees it as finished), without its locks."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("locks", "*.yaml"))
    return dst


def write_config(path: Path, changes: Mapping[str, Any] | None = None) -> str:
    """The test config with ``changes`` (dotted keys, e.g. ``{"vae.max_epochs": 12}``) written to ``path``."""
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    for key, value in (changes or {}).items():
        *parents, last = key.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def snakemake(args: Sequence[str], cwd: Path, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``snakemake ARGS`` to completion in ``cwd``; return the process and its wall time (s)."""
    t0 = time.perf_counter()
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=900)
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, seconds


def kill_when(
    args: Sequence[str],
    cwd: Path,
    ready: Callable[[], bool],
    sig: int = signal.SIGKILL,
    delay_s: float = 0.0,
    timeout_s: float = 600.0,
) -> float:
    """Start ``snakemake ARGS``; once ``ready()`` is true (polled every 50 ms), wait ``delay_s`` and send
    ``sig`` to its whole process group. Returns the seconds from the start to the kill.

    Raises AssertionError if the run ended before it could be killed (the sign never came in time).
    """
    log = open(cwd / "killed-run.log", "w")  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*SNAKEMAKE, *args], cwd=cwd, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"snakemake ended (rc {proc.returncode}) before the kill point; see {log.name}")
            if time.perf_counter() - t0 > timeout_s:
                raise AssertionError(f"the kill point did not come within {timeout_s} s")
            time.sleep(0.05)
        time.sleep(delay_s)
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before the kill; see {log.name}")
        os.killpg(proc.pid, sig)
        killed_at = time.perf_counter() - t0
        proc.wait(timeout=120)
        if sig != signal.SIGKILL:  # a graceful stop: give the group's children time to go
            time.sleep(1.0)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still alive
        except ProcessLookupError:
            pass
        return killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def rerun(args: Sequence[str], cwd: Path) -> float:
    """Finish an interrupted run: ``--unlock`` when a lock was left (a SIGKILL leaves Snakemake's lock in
    ``.snakemake/locks``; a SIGTERM does not), then ``ARGS --rerun-incomplete``. Returns the wall time (s)."""
    seconds = 0.0
    locks = cwd / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        seconds += snakemake([*args, "--unlock"], cwd)[1]
    return seconds + snakemake([*args, "--rerun-incomplete"], cwd)[1]


def partial_files(root: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes (``.<name>.<random><suffix>``) under ``root``."""
    return [p for p in root.rglob(".*") if p.is_file() and ".snakemake" not in p.parts]
