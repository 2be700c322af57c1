"""Speed and accuracy of the Sérsic fitter against an earlier version of it, on one preprocessed shard, in one run.

Fits the galaxies of a preprocessed shard (``results/images/<survey>/shard-*.h5`` of a finished run;
only read) as rule ``sersic`` does (:func:`galmap.structure.measure.fit_sersic_shard`, the
``structure`` config, one thread, on the CPU) twice: with :class:`galmap.structure.sersic.SersicFitter`
of this tree (``new``) and with the one of ``--old-ref`` (``old``: the module as it was at that git
commit, loaded from ``git show`` into a temporary file). Prints for each the CPU seconds
(``time.process_time``), the accuracy against the mock truth as ``benchmarks/headline.py`` computes it
(median |Δn/n| and |ΔRe/Re| of the isolated single-Sérsic galaxies, r-band rows), the flags and
the mean number of iterations; then how far the new per-galaxy parameters are from the old ones.

These machines are shared and noisy: only the ratio of two timings taken in the same run means
anything (``--repeat`` alternates the two and keeps each one's fastest). Usage::

    python benchmarks/sersic_speed.py --shard results/images/decals/shard-0000.h5 \\
        --truth results/catalog/truth.parquet [--old-ref bfec081] [--n 600]

The last line is machine-readable: ``RESULT sersic_speedup=<old/new CPU-s> ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import torch

from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import Shard, read_shard
from galmap.structure import measure

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from headline import sersic as headline_sersic  # noqa: E402

#: The fitter before the speed-up (the base of branch ``fastsersic``).
OLD_REF = "bfec081"


def old_fitter(ref: str, tmp: Path) -> type:
    """``SersicFitter`` of ``src/galmap/structure/sersic.py`` at git commit ``ref``."""
    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:src/galmap/structure/sersic.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = tmp / "sersic_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("sersic_old", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SersicFitter


def subset(shard: Shard, n: int) -> Shard:
    """The first ``n`` galaxies of ``shard``."""
    keep = slice(0, n)
    extra = {k: (v[keep] if np.ndim(v) and len(v) == len(shard) else v) for k, v in shard.extra.items()}
    return Shard(shard.images[keep], shard.ivar[keep], shard.ids[keep], dict(shard.attrs), extra)


def timed_fit(shard: Shard, params: dict, fitter_class: type | None) -> tuple[float, pd.DataFrame, int]:
    """CPU seconds, the Sérsic table and the number of failures of ``fit_sersic_shard`` with ``fitter_class``."""
    log = FailureLog("structure")
    patch = mock.patch.object(measure, "SersicFitter", fitter_class) if fitter_class else contextlib.nullcontext()
    with patch:
        t0 = time.process_time()
        rows = measure.fit_sersic_shard(shard, params, log)
        return time.process_time() - t0, rows, len(log)


def accuracy(rows: pd.DataFrame, truth: Path, tmp: Path, name: str) -> dict:
    """``benchmarks/headline.py``'s Sérsic table of ``rows`` against ``truth``."""
    res = tmp / name
    (res / "structure").mkdir(parents=True, exist_ok=True)
    (res / "catalog").mkdir(parents=True, exist_ok=True)
    rows.to_parquet(res / "structure/sersic.parquet")
    link = res / "catalog/truth.parquet"
    if not link.exists():
        link.symlink_to(Path(truth).resolve())
    table = headline_sersic(res)
    return {} if table is None else table["value"].to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", required=True, help="a preprocessed shard (.h5) of a finished run")
    ap.add_argument("--truth", required=True, help="the run's catalog/truth.parquet")
    ap.add_argument("--old-ref", default=OLD_REF, help="git commit of the old fitter")
    ap.add_argument("--n", type=int, default=0, help="fit only the first N galaxies (0: all)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    params = dict(cfg["structure"]) | {"device": "cpu"}
    shard = read_shard(args.shard)
    if args.n:
        shard = subset(shard, args.n)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_class = old_fitter(args.old_ref, tmp)
        cpu = {"old": [], "new": []}
        out = {}
        for _ in range(args.repeat):
            for name, cls in (("old", old_class), ("new", None)):
                sec, rows, n_fail = timed_fit(shard, params, cls)
                cpu[name].append(sec)
                out[name] = (rows, n_fail)
        summary = {}
        for name in ("old", "new"):
            rows, n_fail = out[name]
            r = rows[rows["band"] == "r"]
            acc = accuracy(rows, Path(args.truth), tmp, name)
            summary[name] = acc
            print(
                f"{name}: {min(cpu[name]):.1f} CPU-s for {len(shard)} galaxies (runs: "
                f"{', '.join(f'{c:.1f}' for c in cpu[name])}); single-Sérsic galaxies {acc.get('galaxies')}: "
                f"median |dn/n| {acc.get('median abs(Δn/n)'):.4f}, |dRe/Re| {acc.get('median abs(ΔRe/Re)'):.4f}; "
                f"flagged {(r['flag'] != 0).sum()}, failures {n_fail}, mean iterations {r['n_iter'].mean():.2f}"
            )
    old_r = out["old"][0].query("band == 'r'").set_index("id")
    new_r = out["new"][0].query("band == 'r'").set_index("id").reindex(old_r.index)
    both = old_r["n"].notna() & new_r["n"].notna()
    dn = (new_r["n"] / old_r["n"] - 1)[both].abs()
    dre = (new_r["re_arcsec"] / old_r["re_arcsec"] - 1)[both].abs()
    pull_n = ((new_r["n"] - old_r["n"]) / old_r["n_err"])[both].abs()
    same_flag = (old_r["flag"] == new_r["flag"]).mean()
    nan_same = (old_r["n"].isna() == new_r["n"].isna()).all()
    print(
        f"new vs old per galaxy ({both.sum()} fitted by both): |n_new/n_old - 1| median {dn.median():.2e}, "
        f"95th percentile {dn.quantile(0.95):.2e}, max {dn.max():.2e}; |Re| median {dre.median():.2e}, "
        f"95th {dre.quantile(0.95):.2e}, max {dre.max():.2e}; |dn| / n_err 95th {pull_n.quantile(0.95):.3f}; "
        f"same flag {same_flag:.3f}; same unfitted galaxies {nan_same}"
    )
    speedup = min(cpu["old"]) / min(cpu["new"])
    key = {"old": summary["old"], "new": summary["new"]}
    print(
        f"RESULT sersic_speedup={speedup:.2f} old_cpu_s={min(cpu['old']):.1f} new_cpu_s={min(cpu['new']):.1f} "
        f"n={len(shard)} old_abs_dn={key['old'].get('median abs(Δn/n)'):.4f} "
        f"new_abs_dn={key['new'].get('median abs(Δn/n)'):.4f} old_abs_dre={key['old'].get('median abs(ΔRe/Re)'):.4f} "
        f"new_abs_dre={key['new'].get('median abs(ΔRe/Re)'):.4f} median_rel_dn_vs_old={dn.median():.2e} "
        f"median_rel_dre_vs_old={dre.median():.2e} same_flag={same_flag:.3f}"
    )


if __name__ == "__main__":
    main()
