"""Choose ``outliers.per_band`` on the VALIDATION half of the default sky (issue 31).

The outlier stage's reconstruction score is either the worst band's chi^2/nu with each band calibrated
alone (``per_band: true``) or the all-band chi^2/nu (``false``). Both variants are scored by the stage's own
code (:func:`galmap.latent.outliers.score` on ``results/vae/z40/latents.parquet``, the config's
``threshold_sigma`` and seed; the population calibration uses every galaxy, as in the stage, and reads no
label) and evaluated by the stage's :func:`galmap.latent.outliers.evaluate` against
``results/catalog/truth.parquet``'s injected anomalies on the galaxies of
:func:`galmap.anomalies.scores.validation_half` only (the anomaly search's split; the other half's labels
are not read). Rule (fixed before measuring): the variant with the larger ROC area of ``outlier_score``
on the validation half; a difference inside the paired bootstrap 68 % interval keeps the default. The
recall at 1 % false positives, the recall at ``threshold_sigma`` per kind and the false-positive rate
are reported with it, and the ROC area of ``recon_sigma`` alone (the only score ``per_band`` changes).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python experiments/outliers_per_band_validation.py \
        results --out experiments/tables/outliers_per_band_validation.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from galmap.anomalies.scores import validation_half
from galmap.core.config import load_config
from galmap.core.io import read_table
from galmap.core.stats import bootstrap_interval
from galmap.latent.outliers import evaluate, score

REPO = Path(__file__).resolve().parents[1]


def _auc(values: np.ndarray, bad: np.ndarray) -> float:
    """ROC area, a galaxy without a score ranking below every score (as :func:`galmap.latent.outliers.roc`)."""
    if bad.all() or not bad.any():
        return float("nan")
    return float(roc_auc_score(bad, np.nan_to_num(values, nan=-1e9)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    args = ap.parse_args()
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    seed, thr = int(cfg["seed"]), float(cfg["outliers"]["threshold_sigma"])
    latents = read_table(args.results / f"vae/z{cfg['vae']['latent_dim']}/latents.parquet")
    truth = read_table(args.results / "catalog/truth.parquet").set_index("id")["anomaly"]
    val = validation_half(latents["id"], seed)
    tables, rows = {}, []
    for per_band in (True, False):
        t = score(latents, thr, seed, per_band)[val].reset_index(drop=True)
        tables[per_band] = t
        metrics, _ = evaluate(t, truth)
        bad = t["id"].map(truth).fillna("none").to_numpy() != "none"
        row = {"per_band": per_band, "n_galaxies": len(t), "n_anomalies": int(bad.sum())}
        row |= {"roc_auc": _auc(t["outlier_score"].to_numpy(), bad)}
        row |= {"recon_roc_auc": _auc(t["recon_sigma"].to_numpy(), bad)}
        row |= {"recall_at_fpr_0.01": float(metrics.loc[metrics["kind"] == "all", "recall_at_fpr_0.01"].iloc[0])}
        kinds = metrics[metrics["kind"] != "none"]
        counts = zip(kinds["kind"], kinds["n_flagged"], kinds["n"], strict=True)
        row |= {f"recall_{k}": f"{f}/{n}" for k, f, n in counts}
        row |= {"false_positive_rate": float(metrics.loc[metrics["kind"] == "none", "flagged_fraction"].iloc[0])}
        rows.append(row)
    table = pd.DataFrame(rows)
    bad = tables[True]["id"].map(truth).fillna("none").to_numpy() != "none"
    a, b = tables[True]["outlier_score"].to_numpy(), tables[False]["outlier_score"].to_numpy()
    lo, hi = bootstrap_interval(lambda i: _auc(a[i], bad[i]) - _auc(b[i], bad[i]), len(a), seed)
    table["roc_auc_diff_per_band_minus_all_68"] = f"[{lo:.3f}, {hi:.3f}]"
    print(table.T.to_string())
    diff = table.loc[0, "roc_auc"] - table.loc[1, "roc_auc"]
    chosen = True if lo <= 0 <= hi else bool(diff > 0)
    reason = "inside the interval: the default kept" if lo <= 0 <= hi else "outside the interval"
    print(f"ROC area per_band - all bands = {diff:+.3f}, 68 % [{lo:.3f}, {hi:.3f}] ({reason}): per_band {chosen}")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
