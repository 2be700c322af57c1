"""Set the first question's volunteer errors from half of the real vote rows; check them on the other half.

The parameters (``mock.volunteers.first_question``: the clarity ``ceiling`` and the ``unclear`` answers,
:data:`galmap.mock.volunteers.FIRST_QUESTION`) and the first question's visibility threshold
(``mock.visibility.featured_snr_threshold``) are chosen together on a fixed grid, by a rule fixed before
measuring: the smallest of the two KS distances' maximum (smooth and featured-or-disk fractions, as
``results/realism/votes.csv``) against the **even** rows of the 4,000 real Galaxy Zoo DECaLS DR5 vote rows
(``realism.real_votes``). The **odd** rows are held out: their KS distances are printed for the chosen
setting and were not used to choose it. The share of galaxies with a near-unanimous smooth vote (> 0.9)
is printed beside, real and mock (the miss that motivated the model; docs/mock.md "Volunteer errors").

Reads a run directory's ``results/catalog/truth.parquet`` (with ``snr_featured``) and this repository's
config; the labels are simulated with the config's seed, everything else (population, perception of the
other features, the other questions' clarity) as configured. Nothing is written.

Usage: ``PYTHONPATH=src python experiments/volunteer_errors.py <run dir> [real votes csv]``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pandas as pd
from featured_threshold import COLUMN, inputs  # the sibling script (its directory is on sys.path)

from galmap.mock.volunteers import make_labels
from galmap.realism.jobs import votes_table

CEILINGS = (0.97, 0.9, 0.8, 0.7)
#: featured-or-disk and artifact shares of the unclear answers (smooth takes the rest)
FEATURED_SHARES = (0.1, 0.23, 0.4)
ARTIFACT_SHARES = (0.02, 0.1, 0.2, 0.3)
#: 2^(k/4) steps from mock.visibility.snr_threshold = 16, as experiments/featured_threshold.py
THRESHOLD_STEPS = (8, 9, 10, 11, 12, 13, 14, 15)


def main(run: Path, real_path: Path) -> None:
    config, vol, vis, survey, truth, real = inputs(run, real_path)
    fit, held_out = real.iloc[::2], real.iloc[1::2]
    for name, rows in (("fitting (even)", fit), ("held-out (odd)", held_out)):
        print(f"real rows, {name}: {len(rows)}; smooth majority {(rows[COLUMN] > 0.5).mean():.4f}, "
              f"smooth fraction > 0.9: {(rows[COLUMN] > 0.9).mean():.4f}")  # fmt: skip
    results = []
    grid = itertools.product(CEILINGS, FEATURED_SHARES, ARTIFACT_SHARES, THRESHOLD_STEPS)
    for ceiling, featured, artifact, step in grid:
        threshold = round(float(vis["snr_threshold"]) * 2 ** (step / 4), 1)
        perception = {"snr_threshold": vis["snr_threshold"], "featured_snr_threshold": threshold,
                      "scatter_dex": vol["perception_scatter_dex"]}  # fmt: skip
        first = {"ceiling": ceiling, "unclear": [1 - featured - artifact, featured, artifact]}
        labels = make_labels(truth, survey, int(config["seed"]), vol["votes_mean"], perception, first)
        ks_fit = votes_table(labels, fit).set_index("column")["ks"]
        ks_held = votes_table(labels, held_out).set_index("column")["ks"]
        results.append({"ceiling": ceiling, "unclear_featured": featured, "unclear_artifact": artifact,
                        "featured_snr_threshold": threshold,
                        "smooth_majority": float((labels[COLUMN] > 0.5).mean()),
                        "unanimous_smooth": float((labels[COLUMN] > 0.9).mean()),
                        "ks_fit_smooth": ks_fit.iloc[0], "ks_fit_featured": ks_fit.iloc[1],
                        "ks_fit_max": max(ks_fit.iloc[0], ks_fit.iloc[1]),
                        "ks_held_smooth": ks_held.iloc[0], "ks_held_featured": ks_held.iloc[1]})  # fmt: skip
    table = pd.DataFrame(results).sort_values("ks_fit_max", kind="stable")
    fmt = {"float_format": lambda x: f"{x:.4f}", "index": False}
    print("the ten best settings on the fitting rows:")
    print(table.head(10).to_string(**fmt))
    now = table[(table["ceiling"] == 0.97) & (table["unclear_featured"] == 0.23)
                & (table["unclear_artifact"] == 0.02)]  # fmt: skip
    print("the former model (ceiling 0.97, unclear 0.75 / 0.23 / 0.02), every threshold:")
    print(now.to_string(**fmt))
    best = table.iloc[0]
    smooth = 1 - best["unclear_featured"] - best["unclear_artifact"]
    print(f"chosen: first_question = {{ceiling: {best['ceiling']}, unclear: [{smooth:.2f}, "
          f"{best['unclear_featured']}, {best['unclear_artifact']}]}}, featured_snr_threshold = "
          f"{best['featured_snr_threshold']}; held-out KS smooth {best['ks_held_smooth']:.4f}, "
          f"featured {best['ks_held_featured']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        Path(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/gz_dr5_fits_with_votes/panoptes.csv"),
    )
