"""Does the unified latent space's retrieval fail on large galaxies? Top-1 by the truth's size, from a run.

Issue 33's retrieval misses all involve Euclid on the default sky. The Euclid stamps are 12.8″ on a side
(``surveys.euclid``), while the mock's documented sizes reach R_e = 5″ (docs/mock.md, "Sizes"), so a large
galaxy's Euclid stamp holds less of it than its DECaLS stamp (16.8″). This recomputes, from a run's
``results/unified/latents.parquet`` (the test split, the posterior means of each single survey), the top-1
retrieval of every ordered survey pair with the stage's own distance
(:func:`galmap.unified.evaluate.retrieval_distances`, ``unified.retrieval_metric`` of the config), and splits
the hits by the truth's light-weighted half-light radius
(``re_light_weighted_arcsec``) into terciles. A diagnosis: it reads a run and chooses nothing.

Usage: ``PYTHONPATH=src python experiments/unified_retrieval_by_size.py <run> [<run> ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from galmap.unified.evaluate import retrieval_distances

SURVEYS = ("decals", "bass", "mzls", "euclid", "sdss")


def hits_by_size(run: Path, metric: str) -> pd.DataFrame:
    """Per ordered survey pair: top-1 rate in each tercile of R_e (arcsec) among the test galaxies."""
    latents = pd.read_parquet(run / "results/unified/latents.parquet")
    truth = pd.read_parquet(run / "results/catalog/truth.parquet").set_index("id")
    test = latents[latents["split"] == "test"]
    mu_cols = [c for c in test.columns if c.startswith("mu_")]
    lv_cols = [c for c in test.columns if c.startswith("logvar_")]
    per = {s: test[test["survey"] == s].set_index("id") for s in SURVEYS}
    rows = []
    for a in SURVEYS:
        for b in SURVEYS:
            if a == b:
                continue
            ids = per[a].index.intersection(per[b].index)
            ta, tb = per[a].loc[ids], per[b].loc[ids]
            d = retrieval_distances(ta[mu_cols].to_numpy(), ta[lv_cols].to_numpy(), tb[mu_cols].to_numpy(),
                                    tb[lv_cols].to_numpy(), metric)  # fmt: skip
            hit = np.argmin(d, axis=1) == np.arange(len(ids))
            re = truth.loc[ids, "re_light_weighted_arcsec"].to_numpy()
            edges = np.quantile(re, [1 / 3, 2 / 3])
            tercile = np.digitize(re, edges)
            row = {"source": a, "target": b, "n": len(ids), "top1": hit.mean()}
            for t, name in enumerate(("small", "middle", "large")):
                row[f"top1_{name}"] = hit[tercile == t].mean()
                row[f"re_median_{name}"] = float(np.median(re[tercile == t]))
            rows.append(row)
    return pd.DataFrame(rows)


def main(runs: list[Path]) -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    metric = config["unified"]["retrieval_metric"]
    for run in runs:
        table = hits_by_size(run, metric)
        print(f"{run} (metric {metric}); R_e medians of the terciles (arcsec): "
              f"{table.iloc[0]['re_median_small']:.2f} / {table.iloc[0]['re_median_middle']:.2f} / "
              f"{table.iloc[0]['re_median_large']:.2f}")  # fmt: skip
        cols = ["source", "target", "n", "top1", "top1_small", "top1_middle", "top1_large"]
        print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        euclid = table[(table["source"] == "euclid") | (table["target"] == "euclid")]
        terciles = ["top1_small", "top1_middle", "top1_large"]
        with_euclid, others = euclid[terciles].mean(), table.drop(euclid.index)[terciles].mean()

        def fmt(values: pd.Series) -> str:
            return " / ".join(f"{v:.3f}" for v in values)

        print(f"mean top-1 by tercile (small / middle / large): pairs with Euclid {fmt(with_euclid)}; "
              f"other pairs {fmt(others)}")  # fmt: skip


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
