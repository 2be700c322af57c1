"""A folder of FITS cutouts (+ catalog) into raw shards: the mock round trip and the real sample cutouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmap.core.failures import FailureLog
from galmap.data.cutouts import cutout_hdulist
from galmap.data.ingest import ingest_cutouts, inventory

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_ingesting_cutouts_written_from_the_mock_gives_the_mock_shard_back(rendered, tmp_path):
    shard = rendered["decals"]
    for i, gid in enumerate(shard.ids):
        layout = "hdus" if i % 2 else "cube"
        cutout_hdulist(shard.images[i], shard.bands, 0.262, shard.ivar[i], layout=layout).writeto(
            tmp_path / f"{gid}.fits"
        )
    table, problems = inventory(tmp_path)
    assert list(table["id"]) == sorted(map(str, shard.ids)) and not problems
    failures = FailureLog("data")
    out = ingest_cutouts(table, "decals", shard.bands, shard.images.shape[-1], 0.262, [1.3, 1.3, 1.2], failures)
    order = [list(shard.ids).index(g) for g in out.ids]
    assert len(failures) == 0
    assert np.array_equal(out.images, shard.images[order])
    assert np.array_equal(out.ivar, np.where(shard.ivar[order] > 0, shard.ivar[order], 0))
    assert not out.extra["ivar_estimated"].any() and out.attrs["source"] == "local"


def test_the_real_sample_cutouts_are_ingested_with_failures_named(tmp_path):
    folder = SHARED / "decals_fits"
    table, problems = inventory(folder)
    assert len(table) == 10 and not problems
    failures = FailureLog("data")
    shard = ingest_cutouts(table, "decals", ["g", "r", "z"], 64, 0.262, [1.45, 1.32, 1.22], failures)
    assert shard.images.shape == (10, 3, 64, 64) and np.isfinite(shard.images).all()
    reasons = failures.frame().set_index("id")["reason"]
    assert list(reasons.index) == ["example_incomplete"] and "cannot be read" in reasons["example_incomplete"]
    ids = list(shard.ids)
    assert (shard.ivar[ids.index("example_incomplete")] == 0).all()  # kept, without data
    assert shard.extra["ivar_estimated"][ids.index("temp_small")]
    assert shard.extra["native_pixscale_arcsec"][ids.index("temp_small")] == pytest.approx(0.262)
    bad = shard.extra["bad_fraction"]
    assert bad[ids.index("example")] == 0 and bad[ids.index("example_bad_pix")] > 0.1
    assert (shard.ivar[ids.index("temp_small")] > 0).all()


def test_without_ivar_the_noise_is_estimated_from_the_pixels(rendered, tmp_path):
    shard = rendered["decals"]
    for i in range(4):
        cutout_hdulist(shard.images[i], shard.bands, 0.262).writeto(tmp_path / f"{shard.ids[i]}.fits")
    table, _ = inventory(tmp_path)
    out = ingest_cutouts(table, "decals", shard.bands, shard.images.shape[-1], 0.262, [1.3, 1.3, 1.2])
    assert out.extra["ivar_estimated"].all()
    sigma = 1 / np.sqrt(np.median(out.ivar, axis=(0, 2, 3)))
    assert np.allclose(sigma, shard.attrs["sky_sigma"], rtol=0.15)


def test_a_catalog_names_its_galaxies_and_rows_without_files(tmp_path):
    folder = SHARED / "decals_fits"
    cat = pd.DataFrame({"iauname": ["example", "example_a", "J000000.00+000000.0"], "ring": [1, 0, 1]})
    cat.to_csv(tmp_path / "catalog.csv", index=False)
    table, problems = inventory(folder, tmp_path / "catalog.csv")
    assert set(table["id"]) >= {"example", "example_a"} and len(table) == 10
    assert table.set_index("id").loc["example", "ring"] == 1
    reasons = dict(problems)
    assert "no FITS file" in reasons["J000000.00_000000.0"]
    assert sum("not in the catalog" in r for r in reasons.values()) == 8
    pd.DataFrame({"name": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="needs a column 'id' or 'iauname'"):
        inventory(folder, tmp_path / "bad.csv")
    dup = tmp_path / "dup"
    dup.mkdir()
    for name in ("a b.fits", "a_b.fits"):
        (dup / name).write_bytes((folder / "temp_small.fits").read_bytes())
    table, problems = inventory(dup)  # the first is kept, the other named
    assert list(table["id"]) == ["a_b"] and len(problems) == 1
    assert problems[0][0] == "a_b" and "duplicate galaxy id after sanitising" in problems[0][1]
