"""Sharing data and models with DVC: push what a run made, pull it elsewhere without rerunning.

DVC tracks ``data/`` (downloads and simulated surveys), ``results/`` (models,
latents, tables, figures) and Snakemake's own record of how each output was made,
``.snakemake/metadata``. The known trap: DVC restores files with new timestamps in
any order, and Snakemake reruns a job whose input looks newer than its output
(it can only rule that out by checksum for small files). After ``dvc pull``,
``snakemake --touch`` (with the config the results were made with) puts the
timestamps back in the DAG's order without running anything; the pulled metadata
keeps each output's parameters and code, so afterwards ``snakemake -n`` has
nothing to do and a changed parameter still reruns exactly the jobs that depend
on it. Without the metadata a parameter change would go unnoticed for the jobs
whose outputs were pulled. tests/workflow/test_workflow.py proves both on a fresh copy.

Git ignores Snakemake's working files through ``.snakemake/.gitignore`` (committed),
which lets ``.snakemake/metadata.dvc`` through: DVC only sees a ``.dvc`` file that git
does not ignore, and a negation in the top-level ``.gitignore`` is not enough for it (a
plain ``dvc pull`` then even removes the metadata as an unused link).

The default remote is a directory next to the repository (``../galmap-dvc-store``,
in ``.dvc/config``); point it elsewhere with ``dvc remote modify local url PATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: What a push tracks, relative to the working directory of the run.
TRACKED = ("data", "results", ".snakemake/metadata")


def run_dvc(*args: str, cwd: str | Path = ".") -> str:
    """Run ``dvc`` (this Python's) in ``cwd``; return its output or raise naming the command."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")  # no network calls of DVC's own
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {cwd}:\n{proc.stdout}{proc.stderr}".rstrip())
    return proc.stdout


def push(cwd: str | Path = ".", remote: str | None = None) -> list[str]:
    """``dvc add`` every tracked path that exists and ``dvc push`` it; return the paths added."""
    root = Path(cwd)
    if not (root / ".dvc").is_dir():
        raise RuntimeError(f"{root.resolve()} is not a DVC project: run `dvc init` (inside git) or `dvc init --no-scm`")
    paths = [p for p in TRACKED if (root / p).exists()]
    if not paths:
        raise RuntimeError(
            f"nothing to push in {root.resolve()}: none of {', '.join(TRACKED)} exists (run the pipeline)"
        )
    run_dvc("add", "--quiet", *paths, cwd=root)
    targets = [f"{p}.dvc" for p in paths]
    run_dvc("push", "--quiet", *(["--remote", remote] if remote else []), *targets, cwd=root)
    return paths
