"""Is the super-resolution Re scatter a size effect? Each method's Re against Euclid's, by terciles of the true size.

Since the documented sizes (docs/mock.md, "Sizes") even the DECaLS Sérsic fit scatters ~0.09 dex against the
Euclid image's Re (0.035–0.04 before), and the stop notes blamed the 12.8″ Euclid stamps (the compared grid is
their central ``superres.target_px`` × ``target_bin`` pixels) for truncating the larger galaxies. This checks that
from a run's ``results/superres/re_compare.parquet``: for the held-out galaxies, split into terciles of the truth's
light-weighted R_e, the bias (median log10 ratio, dex) and scatter (1.4826 × MAD about it, dex:
:func:`galmap.core.stats.robust_std`) of each method's Re against the Euclid fit's, and of both against the
truth's R_e. A diagnosis: it reads a run and chooses nothing.

Usage: ``PYTHONPATH=src python experiments/superres_re_by_size.py <run> [<run> ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from galmap.core.stats import robust_std

METHODS = ("decals", "sersic_base", "regression", "diffusion", "bicubic")


def by_size(run: Path) -> pd.DataFrame:
    """Rows: tercile × compared pair; columns: n, R_e median (arcsec), bias and scatter of log10 Re (dex)."""
    re = pd.read_parquet(run / "results/superres/re_compare.parquet")
    truth = pd.read_parquet(run / "results/catalog/truth.parquet").set_index("id")
    true_re = truth.loc[re["id"], "re_light_weighted_arcsec"].to_numpy()
    tercile = np.digitize(true_re, np.quantile(true_re, [1 / 3, 2 / 3]))
    pairs = [(f"{m} vs euclid", re[f"re_{m}_arcsec"].to_numpy(), re["re_euclid_arcsec"].to_numpy()) for m in METHODS]
    pairs += [(f"{m} vs truth", re[f"re_{m}_arcsec"].to_numpy(), true_re) for m in ("euclid", "decals")]
    rows = []
    for t, name in enumerate(("small", "middle", "large")):
        sel = tercile == t
        for label, a, b in pairs:
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.log10(a[sel] / b[sel])
            d = d[np.isfinite(d)]
            bias = float(np.median(d)) if d.size else np.nan
            scatter = robust_std(d - bias) if d.size else np.nan
            rows.append({"tercile": name, "re_true_median": float(np.median(true_re[sel])), "pair": label,
                         "n": d.size, "bias_dex": bias, "scatter_dex": scatter})  # fmt: skip
    return pd.DataFrame(rows)


def main(runs: list[Path]) -> None:
    for run in runs:
        table = by_size(run)
        print(run)
        print(table.pivot_table(index="pair", columns="tercile", values="scatter_dex", sort=False).round(3)
              [["small", "middle", "large"]].to_string())  # fmt: skip
        print("bias (dex):")
        print(table.pivot_table(index="pair", columns="tercile", values="bias_dex", sort=False).round(3)
              [["small", "middle", "large"]].to_string())  # fmt: skip
        medians = table.groupby("tercile", sort=False)["re_true_median"].first().round(2).to_dict()
        print(f"R_e medians of the terciles (arcsec): {medians}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
