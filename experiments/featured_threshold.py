"""Set the first question's visibility threshold (``mock.visibility.featured_snr_threshold``) from real votes.

The one volunteer parameter of issue 27 taken from the 4,000 real Galaxy Zoo DECaLS DR5 vote rows
(``realism.real_votes``, ``gz_dr5_fits_with_votes/panoptes.csv``), by a rule fixed before any
measurement: the threshold (on a grid of 2^(1/4) steps from ``mock.visibility.snr_threshold``) whose
simulated volunteers give the same share of galaxies with a smooth majority
(``smooth-or-featured_smooth_fraction`` > 0.5) as the real rows. Everything else (the perception
scatter, the clarity model, the population) is the config's. The KS distances printed beside are
**in-sample** for this parameter: they are not used to choose it.

Reads a run directory's ``results/catalog/truth.parquet`` (with ``snr_featured``: rule ``mock_catalog``
of this code) and the config of this repository; the labels are simulated with the config's seed.

Usage: ``PYTHONPATH=src python experiments/featured_threshold.py <run dir> [real votes csv]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from galmap.core.surveys import Survey
from galmap.mock.volunteers import make_labels
from galmap.realism.jobs import votes_table

COLUMN = "smooth-or-featured_smooth_fraction"


def inputs(run: Path, real_path: Path) -> tuple[dict, dict, dict, Survey, pd.DataFrame, pd.DataFrame]:
    """This repository's config, its ``mock.volunteers`` and ``mock.visibility``, the volunteers' survey, the run's
    truth table and the real vote rows (also used by ``experiments/volunteer_errors.py``)."""
    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    vol, vis = config["mock"]["volunteers"], config["mock"]["visibility"]
    survey = Survey.from_config(vol["label_survey"], config["surveys"][vol["label_survey"]])
    truth = pd.read_parquet(run / "results" / "catalog" / "truth.parquet")
    return config, vol, vis, survey, truth, pd.read_csv(real_path)


def main(run: Path, real_path: Path) -> None:
    config, vol, vis, survey, truth, real = inputs(run, real_path)
    target = float((real[COLUMN] > 0.5).mean())
    print(f"real rows: {len(real)}; share with a smooth majority: {target:.4f}")
    grid = float(vis["snr_threshold"]) * 2 ** (np.arange(0, 29) / 4)
    rows = []
    for thr in grid:
        perception = {"snr_threshold": vis["snr_threshold"], "featured_snr_threshold": thr,
                      "scatter_dex": vol["perception_scatter_dex"]}  # fmt: skip
        labels = make_labels(truth, survey, int(config["seed"]), vol["votes_mean"], perception, vol["first_question"])
        ks = votes_table(labels, real).set_index("column")["ks"]
        rows.append({"featured_snr_threshold": thr, "smooth_majority": float((labels[COLUMN] > 0.5).mean()),
                     "ks_smooth": ks.iloc[0], "ks_featured": ks.iloc[1]})  # fmt: skip
    table = pd.DataFrame(rows)
    best = table.iloc[int(np.argmin(np.abs(table["smooth_majority"] - target)))]
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"chosen (smooth-majority share closest to the real {target:.4f}): "
          f"featured_snr_threshold = {best['featured_snr_threshold']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/gz_dr5_fits_with_votes/panoptes.csv"),
    )
