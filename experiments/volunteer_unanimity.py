"""How unanimous the mock volunteers are on the first question, against the 4,000 real vote rows.

Prints, for the default sky of a run, the share of galaxies with a smooth majority
(``smooth-or-featured_smooth_fraction`` > 0.5), the share with a near-unanimous smooth vote (> 0.9) and the KS
distances of the smooth and featured fractions to the real rows, on a grid of the first question's threshold
(``mock.visibility.featured_snr_threshold``) and of the clarity model's ceiling (0.97 in
:func:`galmap.mock.volunteers.clarity`; this script scales the clarity to lower ceilings — an experiment, not a
config key). A diagnosis, used to choose nothing: docs/mock.md ("Unanimity, a known miss").

Usage: ``PYTHONPATH=src python experiments/volunteer_unanimity.py <run dir> [real votes csv]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from featured_threshold import COLUMN, inputs  # the sibling script (its directory is on sys.path)

import galmap.mock.volunteers as volunteers
from galmap.realism.jobs import votes_table

CEILINGS = (0.97, 0.85, 0.75, 0.65)
THRESHOLDS = (90.5, 107.6, 128.0, 152.2, 181.0)


def main(run: Path, real_path: Path) -> None:
    config, vol, vis, survey, truth, real = inputs(run, real_path)
    print(f"real rows: {len(real)}; smooth majority {(real[COLUMN] > 0.5).mean():.4f}, "
          f"smooth fraction > 0.9: {(real[COLUMN] > 0.9).mean():.4f}")  # fmt: skip
    clarity = volunteers.clarity
    rows = []
    try:
        for ceiling in CEILINGS:
            volunteers.clarity = lambda t, s, c=ceiling: np.minimum(clarity(t, s) * c / 0.97, c)
            for thr in THRESHOLDS:
                perception = {"snr_threshold": vis["snr_threshold"], "featured_snr_threshold": thr,
                              "scatter_dex": vol["perception_scatter_dex"]}  # fmt: skip
                labels = volunteers.make_labels(truth, survey, int(config["seed"]), vol["votes_mean"], perception)
                ks = votes_table(labels, real).set_index("column")["ks"]
                rows.append({"clarity_ceiling": ceiling, "featured_snr_threshold": thr,
                             "smooth_majority": float((labels[COLUMN] > 0.5).mean()),
                             "unanimous_smooth": float((labels[COLUMN] > 0.9).mean()),
                             "ks_smooth": ks.iloc[0], "ks_featured": ks.iloc[1]})  # fmt: skip
    finally:
        volunteers.clarity = clarity
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/gz_dr5_fits_with_votes/panoptes.csv"),
    )
