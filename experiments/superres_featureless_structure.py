"""Where the super-resolution draws' asymmetry comes from: featureless galaxies, per method, from a run's outputs.

Issue 29's "no invented structure" asks that, on galaxies whose truth has no arms, bar, clumps or companion
(:func:`galmap.images2images.superres_structure.featureless`), the draws' asymmetry and arm measure match Euclid's
within its noise. This prints, from ``results/superres/structure_galaxies.parquet`` (rule ``superres_structure``),
the median asymmetry, ``arm_m2`` and concentration of each method on the featureless galaxies and on the others:
the Euclid image, its noiseless rendering, DECaLS, bicubic, the regression network, each diffusion draw (pooled)
and the draws' mean; and the draws' spread scale (``results/superres/calibration.csv``), by which the draws'
deviations from their mean were multiplied. A diagnosis: it reads a run and chooses nothing.

Usage: ``PYTHONPATH=src python experiments/superres_featureless_structure.py <run> [<run> ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from galmap.images2images.superres_structure import featureless

MEASURES = ["asymmetry", "arm_m2", "concentration"]


def table(run: Path) -> pd.DataFrame:
    """Median of :data:`MEASURES` per method (draws pooled as ``draws``) and featureless or not, with counts."""
    galaxies = pd.read_parquet(run / "results/superres/structure_galaxies.parquet")
    truth = pd.read_parquet(run / "results/catalog/truth.parquet")
    plain = set(truth["id"][featureless(truth)].astype(str))
    galaxies["featureless"] = galaxies["id"].astype(str).isin(plain)
    galaxies["method"] = galaxies["method"].where(~galaxies["method"].str.startswith("draw_"), "draws")
    grouped = galaxies.groupby(["featureless", "method"])
    out = grouped[MEASURES].median()
    out["n"] = grouped["id"].nunique()
    return out


def main(runs: list[Path]) -> None:
    for run in runs:
        cal = pd.read_csv(run / "results/superres/calibration.csv").set_index("metric")["value"]
        bias, noise = cal["featureless_asymmetry_bias"], cal["featureless_asymmetry_euclid_noise"]
        print(f"{run}: spread scale {cal['spread_scale']:.3f}; featureless asymmetry bias of the draws "
              f"{bias:+.3f} (Euclid's noise {noise:.3f})")  # fmt: skip
        with pd.option_context("display.width", 160, "display.precision", 3):
            print(table(run))


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
