"""How far preprocessing's sky estimate is from the mock's residual sky, per survey, in units of the pixel noise.

For each of DECaLS r, BASS r and Euclid VIS: the median over a run's galaxies of (``background`` of
``results/images/<survey>/shard-*.h5`` − the truth's ``sky_<survey>_<band>``) / σ, and of its absolute value.
Positive: the estimate holds galaxy light (wings beyond the grown segments). Prints one line per run and survey.

Usage: ``PYTHONPATH=src python experiments/background_bias.py <run dir> [<run dir> ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from galmap.core.io import read_shard

BANDS = (("decals", "r"), ("bass", "r"), ("euclid", "VIS"))


def main(runs: list[Path]) -> None:
    for run in runs:
        truth = pd.read_parquet(run / "results" / "catalog" / "truth.parquet").set_index("id")
        for survey, band in BANDS:
            errors = []
            for path in sorted((run / "results" / "images" / survey).glob("shard-*.h5")):
                shard = read_shard(path)
                j = list(shard.bands).index(band)
                sigma = float(shard.attrs["sky_sigma"][j])
                sky = truth.loc[list(shard.ids), f"sky_{survey}_{band}"].to_numpy()
                errors.append((shard.extra["background"][:, j] - sky) / sigma)
            if not errors:
                print(f"{run}: {survey} has no preprocessed shards")
                continue
            err = np.concatenate(errors)
            print(f"{run} {survey} {band}: {len(err)} galaxies, median (estimate - truth) / sigma "
                  f"{np.median(err):+.3f}, median |.| {np.median(np.abs(err)):.3f}")  # fmt: skip


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
