"""The realism stage's comparison against the 18 real Galaxy Zoo DECaLS catalogue-row images (issue 27).

The stage's default real sample (``../shared/data/gz_decals_rings_sample``) is ring-enriched and holds larger
galaxies than Galaxy Zoo DECaLS in general (docs/realism.md). The catalogue rows
(``../shared/data/gz_decals_catalog_rows``: rows of the published catalogues with their DR5 PNGs) are drawn
without regard to morphology, and their catalogue radii give each frame's pixel scale
(:func:`galmap.core.colour.gz_decals_pixscale`). This script measures them with the stage's own statistics
(:func:`galmap.realism.imagestats.measure`) and compares them with a run's mock frames
(``results/realism/stats.parquet``): KS per statistic, and the stage's classifier two-sample test (config
``realism.classifier``, the same folds and seed) for catalogue rows vs mock, ring sample vs mock and catalogue rows
vs ring sample; and the frame statistics (sky noise and level, other sources, r50) at Galaxy Zoo's 0.10''/px
floor and above it, where the frames' pixel scale is known for both. 18 images: a check beside the stage's
numbers, not a target (its AUC is noisy).

Usage: ``PYTHONPATH=src python experiments/realism_catalogue_rows.py <run dir> [shared data dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from galmap.core.colour import GZ_DECALS_MIN_PIXSCALE, GZ_DECALS_SIZE_PX, gz_decals_pixscale
from galmap.realism.c2st import c2st, ks_table
from galmap.realism.imagestats import measure

#: A frame at Galaxy Zoo's pixel-scale floor (arcsec/px; the rule's minimum, to rounding).
AT_FLOOR = GZ_DECALS_MIN_PIXSCALE + 1e-4
CATALOGUES = ("gz_decals_volunteers_5.csv", "gz_decals_volunteers_1_and_2.csv", "gz_decals_auto_posteriors.csv")


def catalogue_rows(data: Path, bin_px: int) -> pd.DataFrame:
    """Statistics of every 424x424 catalogue-row PNG, with its catalogue pixel scale (NaN without radii)."""
    root = data / "gz_decals_catalog_rows"
    rows = pd.concat([pd.read_csv(root / f) for f in CATALOGUES]).drop_duplicates("iauname").set_index("iauname")
    out = []
    for path in sorted(root.glob("gz_decals_dr5_png_part*/**/*.png")):
        img = np.asarray(Image.open(path).convert("RGB"))
        if img.shape[:2] != (GZ_DECALS_SIZE_PX, GZ_DECALS_SIZE_PX):
            print(f"{path.name}: {img.shape[1]}x{img.shape[0]}, not 424x424: left out")
            continue
        name = path.stem
        scale = (float(gz_decals_pixscale(rows.loc[name, "petro_th50"], rows.loc[name, "petro_th90"]))
                 if name in rows.index else np.nan)  # fmt: skip
        out.append({"id": name, "pixscale_arcsec": scale} | measure(img, bin=bin_px))
    return pd.DataFrame(out)


def main(run: Path, data: Path) -> None:
    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    p = cfg["realism"]
    columns = list(p["statistics"])
    stats = pd.read_parquet(run / "results" / "realism" / "stats.parquet")
    mock, rings = stats[stats["sample"] == "mock"], stats[stats["sample"] == "real"]
    rows = catalogue_rows(data, int(p["bin_px"]))
    floor = lambda s: float((s <= AT_FLOOR).mean())  # noqa: E731 - the share of frames at the floor
    print(f"catalogue rows: {len(rows)}; frames at the 0.10''/px floor: {floor(rows['pixscale_arcsec'].dropna()):.2f} "
          f"(mock {floor(mock['pixscale_arcsec']):.2f})")  # fmt: skip
    ks = ks_table(rows, mock, columns).rename(columns={"median_a": "median_rows", "median_b": "median_mock"})
    ks["ks_rings"] = ks_table(rings, mock, columns)["ks"].to_numpy()
    print(ks[["statistic", "ks", "ks_rings", "median_rows", "median_mock"]].round(3).to_string(index=False))
    # the frame statistics at matched pixel scale: at Galaxy Zoo's 0.10''/px floor and above it
    frame = ["sky_noise", "sky_level", "n_other_sources", "r50"]
    for name, d in (("catalogue rows", rows), ("mock", mock)):
        at = d["pixscale_arcsec"] <= AT_FLOOR
        for where, sel in (("at the floor", at), ("above it", ~at & d["pixscale_arcsec"].notna())):
            med = d.loc[sel, frame].median()
            print(f"{name:14s} {where:12s} n={int(sel.sum()):3d} " + " ".join(f"{c} {med[c]:.4g}" for c in frame))
    seed = int(cfg["seed"])
    for name, a, b in (("catalogue rows vs mock", rows, mock), ("ring sample vs mock", rings, mock),
                       ("catalogue rows vs ring sample", rows, rings)):  # fmt: skip
        res = c2st(a, b, columns, p["classifier"], seed)
        print(f"{name}: ROC AUC {res['roc_auc']:.3f} ({res['n_a']} vs {res['n_b']})")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
