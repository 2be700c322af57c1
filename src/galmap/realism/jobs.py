"""The realism stage's job: files in, files out (rule ``realism``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from galmap.core.colour import GZ_DECALS_SIZE_PX
from galmap.core.failures import FailureLog
from galmap.core.io import atomic_path, read_table, write_table
from galmap.core.surveys import surveys_from_config
from galmap.mock.neighbours import NeighbourCounts
from galmap.realism.c2st import c2st, ks_table
from galmap.realism.imagestats import measure
from galmap.realism.render import gz_decals_image

log = logging.getLogger("galmap")

#: The vote fractions compared with the real Galaxy Zoo DECaLS rows.
VOTE_COLUMNS = ("smooth-or-featured_smooth_fraction", "smooth-or-featured_featured-or-disk_fraction")


def pick_mock(truth: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` mock galaxies without injected anomalies, drawn at random (seeded), in index order."""
    normal = truth[truth["anomaly"] == "none"] if "anomaly" in truth else truth
    rng = np.random.default_rng([seed, 27])
    take = rng.choice(len(normal), size=min(n, len(normal)), replace=False)
    return normal.iloc[np.sort(take)]


def read_real(catalog_path: str | Path, failures: FailureLog) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The real catalog's rows whose PNG reads as a 424x424 colour image, and those images (uint8)."""
    cat = pd.read_csv(catalog_path)
    if "file" not in cat:
        raise ValueError(f"realism.real_catalog {catalog_path}: no 'file' column (image paths relative to the catalog)")
    root = Path(catalog_path).parent
    keep, images = [], []
    for i, row in cat.iterrows():
        gid = str(row.get("iauname", row["file"]))
        try:
            img = np.asarray(Image.open(root / str(row["file"])).convert("RGB"))
        except (OSError, ValueError) as exc:
            failures.add(gid, f"real image {row['file']} unreadable: {exc!r}")
            continue
        if img.shape[:2] != (GZ_DECALS_SIZE_PX, GZ_DECALS_SIZE_PX):
            failures.add(gid, f"real image {row['file']} is {img.shape[1]}x{img.shape[0]}, not 424x424")
            continue
        keep.append(i)
        images.append(img)
    return cat.loc[keep].reset_index(drop=True), images


def _table(images: list[np.ndarray], bin_px: int) -> pd.DataFrame:
    return pd.DataFrame([measure(im, bin=bin_px) for im in images])


def c2st_table(
    real: pd.DataFrame, mock: pd.DataFrame, params: Mapping[str, Any], seed: int, ring_column: str | None
) -> pd.DataFrame:
    """C2ST and KS rows for real (all) vs mock and, with a ring column, non-ring real vs mock."""
    columns = list(params["statistics"])
    comparisons = {"all_real": real}
    if ring_column and ring_column in real:
        comparisons["non_ring_real"] = real[real[ring_column] == 0]
    rows = []
    for name, sample in comparisons.items():
        res = c2st(sample, mock, columns, params["classifier"], seed)
        base = {"comparison": name, "n_real": res["n_a"], "n_mock": res["n_b"]}
        rows.append(base | {"statistic": "classifier"} | {k: res[k] for k in ("accuracy", "balanced_accuracy",
                                                                               "roc_auc")})  # fmt: skip
        ks = ks_table(sample, mock, columns).rename(columns={"median_a": "median_real", "median_b": "median_mock"})
        rows += [base | r for r in ks.to_dict("records")]
    return pd.DataFrame(rows)


def votes_table(labels: pd.DataFrame, real_votes: pd.DataFrame) -> pd.DataFrame:
    """KS distance of each vote-fraction distribution, mock labels vs real Galaxy Zoo DECaLS rows."""
    rows = []
    for col in VOTE_COLUMNS:
        if col not in labels or col not in real_votes:
            raise ValueError(f"vote column {col} missing from the mock labels or the real votes table")
        m = labels[col].dropna().to_numpy(float)
        r = real_votes[col].dropna().to_numpy(float)
        ks = ks_table(pd.DataFrame({col: r}), pd.DataFrame({col: m}), [col]).iloc[0]
        rows.append({"column": col, "n_real": len(r), "n_mock": len(m), "ks": ks["ks"], "ks_pvalue": ks["ks_pvalue"],
                     "mean_real": float(r.mean()), "mean_mock": float(m.mean())})  # fmt: skip
    return pd.DataFrame(rows)


def run_realism(
    config: Mapping[str, Any],
    truth_path: str,
    labels_path: str,
    outputs: Mapping[str, str],
) -> None:
    """Render, measure and compare; write ``c2st``, ``votes``, ``stats``, ``examples`` and ``failures``.

    ``config``: the full config (``seed``, ``surveys``, ``mock.neighbours``, ``realism``).
    """
    p = config["realism"]
    seed = int(config["seed"])
    failures = FailureLog("realism")
    surveys = surveys_from_config(config)
    survey = surveys[p["survey"]]
    field = max(s.fov_arcsec for s in surveys.values())  # where the mock's neighbours lie (as mock_render)
    # the frames' neighbours: the same number counts as the stamps'
    counts = NeighbourCounts.from_config((config.get("mock") or {}).get("neighbours"))
    picked = pick_mock(read_table(truth_path), int(p["n_mock"]), seed)
    mock_images, geometry, ids = [], [], []
    for row in picked.to_dict("records"):
        try:
            img, geo = gz_decals_image(row, survey, seed, field, counts=counts)
        except Exception as exc:  # noqa: BLE001 - recorded, the stage goes on
            log.warning("realism: mock galaxy %s not rendered: %r", row["id"], exc)
            failures.add(row["id"], f"Galaxy Zoo DECaLS render failed: {exc!r}")
            continue
        mock_images.append(img)
        geometry.append(geo)
        ids.append(row["id"])
    real_cat, real_images = read_real(p["real_catalog"], failures)
    bin_px = int(p["bin_px"])
    mock = pd.concat([pd.DataFrame({"id": ids}), pd.DataFrame(geometry), _table(mock_images, bin_px)], axis=1)
    real = pd.concat([real_cat[["iauname"]].rename(columns={"iauname": "id"}), _table(real_images, bin_px)], axis=1)
    ring = p.get("ring_column")
    if ring and ring in real_cat:
        real[ring] = real_cat[ring].to_numpy()
    log.info("realism: %d mock and %d real images measured", len(mock), len(real))
    table = c2st_table(real, mock, p, seed, ring)
    with atomic_path(outputs["c2st"], ".csv") as tmp:
        table.to_csv(tmp, index=False)
    votes = votes_table(read_table(labels_path), pd.read_csv(p["real_votes"]))
    with atomic_path(outputs["votes"], ".csv") as tmp:
        votes.to_csv(tmp, index=False)
    stats = pd.concat([real.assign(sample="real"), mock.assign(sample="mock")], ignore_index=True)
    write_table(outputs["stats"], stats)
    k = int(p["n_examples"])
    ri = np.unique(np.linspace(0, len(real_images) - 1, k).astype(int))  # spread over the catalog (rings first)
    with atomic_path(outputs["examples"], ".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, real=np.stack([real_images[i] for i in ri]), mock=np.stack(mock_images[:k]),
                            real_ids=np.asarray(real["id"].to_numpy()[ri], str),
                            mock_ids=np.asarray(ids[:k], str))  # fmt: skip
    failures.write(outputs["failures"])
    for r in table[table["statistic"] == "classifier"].itertuples():
        log.info("realism: %s vs mock: ROC AUC %.3f, accuracy %.3f", r.comparison, r.roc_auc, r.accuracy)
