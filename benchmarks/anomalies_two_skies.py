"""The anomaly search on two skies: the issue-30 targets, measured by the stage's own code.

Reads two run directories (the default sky, seed 42, and the second sky, seed 2027), each
with ``results/vae/z40/latents.parquet``, ``results/structure/morphometry.parquet`` and
``results/catalog/truth.parquet``, and runs the ``anomalies`` job's functions
(:func:`galmap.anomalies.jobs.rank_galaxies`, :func:`galmap.anomalies.jobs.expert_rounds`)
with ``config/config.yaml``'s ``outliers`` settings. Prints, per sky (and, on the default
sky, on its TEST half, the galaxies outside :func:`galmap.anomalies.scores.validation_half`,
which chose the settings):

* ROC area of ``discovery_score``: astrophysical anomalies against normal galaxies;
* ``is_artefact``: recall of the injected artefacts and false-positive rate on the rest;
* the simulated expert's rounds (``active.csv``) and their sum over the skies: anomalies
  seen among the first 100 objects viewed, artefacts among them;
* anomalies seen after 100 viewed in random order (expected), unsupervised, with the expert;
* repeatability: the ranking computed twice is the same.

Writes ``active_<sky>.csv`` and ``curve_<sky>.csv`` to the output directory.
Usage: ``PYTHONPATH=src python benchmarks/anomalies_two_skies.py RUN_SEED42 RUN_SEED2027 OUTDIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from galmap.anomalies.jobs import expert_rounds, rank_galaxies
from galmap.anomalies.scores import ASTROPHYSICAL, INSTRUMENTAL, validation_half


def sky(run: Path, seed: int, params: dict, out: Path, name: str) -> pd.DataFrame:
    r = run / "results"
    lat = pd.read_parquet(r / "vae/z40/latents.parquet")
    morph = pd.read_parquet(r / "structure/morphometry.parquet")
    truth = pd.read_parquet(r / "catalog/truth.parquet")
    table = rank_galaxies(params, seed, lat, morph, None)
    again = rank_galaxies(params, seed, lat, morph, None)
    same = table["id"].equals(again["id"])
    kind = table["id"].map(truth.set_index("id")["anomaly"]).fillna("none").to_numpy()
    astro, art, none = np.isin(kind, ASTROPHYSICAL), np.isin(kind, INSTRUMENTAL), kind == "none"
    parts = {"all": np.ones(len(table), bool)}
    if seed == 42:
        parts["test half"] = ~validation_half(table["id"], seed)
    for part, sel in parts.items():
        d = np.nan_to_num(table["discovery_score"].to_numpy(), nan=-1e9)
        keep = sel & (astro | none)
        auc = roc_auc_score(astro[keep], d[keep])
        flag = table["is_artefact"].to_numpy()
        print(
            f"{name} [{part}]: discovery ROC area (astrophysical vs normal, {astro[sel].sum()} vs {none[sel].sum()}) "
            f"{auc:.3f}; is_artefact recall {flag[sel & art].mean():.2f} "
            f"({flag[sel & art].sum()}/{(sel & art).sum()}), "
            f"false positives {flag[sel & ~art].mean():.4f}; per kind "
            + str({k: f"{flag[sel & (kind == k)].sum()}/{(sel & (kind == k)).sum()}" for k in INSTRUMENTAL})
        )
    rows, curve = expert_rounds(params, seed, table, truth)
    rows.insert(0, "sky", name)
    rows.to_csv(out / f"active_{name}.csv", index=False)
    curve.to_csv(out / f"curve_{name}.csv", index=False)
    n = int(params["viewed"])
    print(rows.to_string(index=False))
    print(
        f"{name}: after {n} viewed: random {curve['random'].iloc[n - 1]:.1f}, unsupervised "
        f"{curve['unsupervised'].iloc[n - 1]}, expert (last round) {curve['active'].iloc[n - 1]}; "
        f"same ranking twice: {same}"
    )
    return rows


def main(run42: str, run2027: str, out: str) -> None:
    params = yaml.safe_load(Path("config/config.yaml").read_text())["outliers"]
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    both = [sky(Path(run42), 42, params, outdir, "seed42")]
    if (Path(run2027) / "results/vae/z40/latents.parquet").exists():
        both.append(sky(Path(run2027), 2027, params, outdir, "seed2027"))
    else:
        print(f"{run2027}: no latents yet; the second sky is not measured")
    total = (
        pd.concat(both).groupby("round")[["labels_used", "anomalies_seen", "anomalies_total", "artefacts_seen"]].sum()
    )
    total["recall"] = total["anomalies_seen"] / total["anomalies_total"]
    print(f"summed over {len(both)} sky/skies:\n{total.to_string()}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
