"""``data.source: local``: the whole workflow on the real sample cutouts, and what it skips."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from galmap.core.config import ConfigError, load_yaml, validate_config
from galmap.core.failures import FailureLog
from galmap.data.plan import source_surveys, stage_plan, usable_questions
from tests.conftest import REPO, SCHEMA, SHARED_DATA

FITS_FOLDER = SHARED_DATA / "decals_fits"


def _local(test_config, **local):
    cfg = dict(test_config)
    cfg["data"] = {"source": "local", "local": {"path": str(FITS_FOLDER), "catalog": None, "survey": "decals"} | local}
    return cfg


def test_the_plan_skips_what_the_data_cannot_give(test_config, tmp_path):
    plan = stage_plan(test_config)
    assert all(v is None for v in plan.values())  # the mock has everything
    cfg = _local(test_config)
    assert source_surveys(cfg) == ["decals"]
    plan = stage_plan(cfg)
    assert plan["structure"] is None and plan["vae"] is None and plan["flow"] is None
    assert "no catalog with labels" in plan["classify"] and "classification" in plan["domain"]
    assert "truth" in plan["truth"]
    (tmp_path / "cat.csv").write_text("iauname,ring\nexample,1\nexample_a,0\n")
    cfg = _local(test_config, catalog=str(tmp_path / "cat.csv"))
    cfg["classify"] = dict(
        cfg["classify"], questions=["bar", {"name": "ring", "column": "ring", "classes": ["no", "yes"]}]
    )
    kept, why = usable_questions(cfg)
    assert kept == [cfg["classify"]["questions"][1]] and "bar_strong_fraction" in why["bar"]
    assert stage_plan(cfg)["classify"] is None
    assert "bass" in stage_plan(cfg)["domain"]  # the target surveys are not in one folder


def test_a_local_source_without_a_folder_or_with_an_unknown_survey_is_a_config_error(test_config):
    schema = load_yaml(SCHEMA)
    cfg = {k: v for k, v in test_config.items()}
    cfg["data"] = {"source": "local"}
    with pytest.raises(ConfigError, match="data.local.path"):
        validate_config(cfg, schema)
    cfg["data"] = {"source": "local", "local": {"path": "x", "survey": "hsc"}}
    with pytest.raises(ConfigError, match="'data.local.survey' names survey 'hsc'"):
        validate_config(cfg, schema)


def _bad_folder(folder):
    """The real sample cutouts plus one file of each kind of bad input (test_faults.py's table, in a run):
    id -> the words its failure row must hold."""
    import shutil

    from astropy.io import fits

    from galmap.data.cutouts import cutout_hdulist

    for path in FITS_FOLDER.glob("*.fits"):
        shutil.copy(path, folder / path.name)
    good = (FITS_FOLDER / "example.fits").read_bytes()
    (folder / "bad_truncated.fits").write_bytes(good[: int(0.7 * len(good))])
    (folder / "bad_garbage.fits").write_bytes(b"not a FITS file" * 300)
    with fits.open(FITS_FOLDER / "example.fits") as hdul:
        cube = np.asarray(hdul[0].data, np.float32)
    cutout_hdulist(cube[:2], ["g", "r"], 0.262, layout="hdus").writeto(folder / "bad_missing_band.fits")
    cutout_hdulist(np.full_like(cube, np.nan), ["g", "r", "z"], 0.262).writeto(folder / "bad_all_nan.fits")
    shutil.copy(FITS_FOLDER / "example_a.fits", folder / "dup id.fits")  # both sanitise to dup_id
    shutil.copy(FITS_FOLDER / "example_b.fits", folder / "dup_id.fits")
    return {
        "example_incomplete": "cannot be read",
        "bad_truncated": "cannot be read (truncated or corrupt FITS?)",
        "bad_garbage": "cannot be read",
        "bad_missing_band": "band(s) z missing",
        "bad_all_nan": "no pixel with data",
        "dup_id": "duplicate galaxy id after sanitising",
    }


@pytest.mark.slow
def test_the_workflow_runs_on_the_real_sample_cutouts_with_bad_files_among_them(tmp_path):
    """One run fed a folder with each kind of bad file: it finishes, each bad file has its failure row with its
    cause, and every input id is in the outputs or in a failures table (no galaxy vanishes)."""
    folder = tmp_path / "cutouts"
    folder.mkdir()
    expected = _bad_folder(folder)
    local = f"data={{source: local, local: {{path: {folder}}}}}"  # what a user types after --config
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "--configfile",
           str(REPO / "config" / "test.yaml"), "--config", local]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stage 'classify' skipped: " in proc.stderr and "stage 'domain' skipped" in proc.stderr
    res = tmp_path / "results"
    catalog = pd.read_parquet(res / "catalog/catalog.parquet")
    ids = set(catalog["id"])
    inputs = {p.name[: -len(".fits")].replace(" ", "_") for p in folder.glob("*.fits")}
    assert ids == inputs and len(ids) == 15  # 10 sample cutouts, 4 bad files, one id of two files
    data_failures = pd.read_csv(res / "data/failures.csv")
    reasons = data_failures.groupby("id")["reason"].apply(" | ".join)
    for gid, words in expected.items():
        assert words in reasons.get(gid, ""), (gid, reasons.to_dict())
    assert set(reasons.index) == set(expected), reasons.to_dict()
    assert "dup id.fits" in reasons["dup_id"] or "dup_id.fits" in reasons["dup_id"]
    # no galaxy vanishes: each is in the outputs of every stage that ran (with NaN where it failed)
    for table in ("structure/sersic.parquet", "structure/morphometry.parquet", "vae/z4/latents.parquet",
                  "outliers/outliers.parquet"):  # fmt: skip
        assert set(pd.read_parquet(res / table)["id"]) == ids, table
    latents = pd.read_parquet(res / "vae/z4/latents.parquet").set_index("id")
    usable = sorted(ids - set(expected) - {"dup_id"})
    assert latents.loc[usable].filter(like="mu").notna().all().all()
    for stage in ("preprocess", "structure", "vae"):  # every failure row names a galaxy of the input
        assert set(pd.read_csv(res / f"{stage}/failures.csv")["id"]) <= ids, stage
    for name in ("survey_examples", "sersic_residuals", "morphometry", "vae", "outliers", "flow"):
        assert (res / f"figures/{name}.png").stat().st_size > 0
    assert not (res / "figures/sersic_truth.png").exists() and not (res / "classify").exists()


def test_colour_images_keep_intensities_and_put_red_in_the_reddest_band(tmp_path):
    from PIL import Image

    from galmap.data.ingest import ingest_colour_images, inventory

    rgb = np.zeros((96, 128, 3), np.uint8)  # wider than tall: centre-cropped to 96 x 96
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[40:56, 56:72, 0] = 255  # a red square in the middle
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    table, problems = inventory(tmp_path, None, ("*.png", "*.jpg"))
    assert list(table["id"]) == ["a", "b"] and not problems
    failures = FailureLog("data")
    shard = ingest_colour_images(table, "decals", ["g", "r", "z"], 24, 0.262, [1.4, 1.3, 1.2], failures)
    assert shard.attrs["calibrated"] is False and shard.attrs["units"] == ["relative"] * 3
    g, r, z = shard.images[0]
    assert np.allclose([g[0, 0], r[0, 0], z[0, 0]], [50 / 255, 100 / 255, 200 / 255], atol=1e-3)  # B, G, R
    assert z[12, 12] > 0.95 and z[12, 12] > z[0, 0] + 0.15  # the square, in z, at the centre
    assert (shard.ivar[0] > 0).all() and (shard.ivar[1] == 0).all()
    assert list(failures.frame()["id"]) == ["b"] and "cannot be read as an image" in failures.frame()["reason"][0]


@pytest.mark.slow
def test_the_workflow_runs_the_image_only_stages_on_colour_images(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    folder = SHARED_DATA / "gz_decals_rings_sample"
    cfg["shard_size"] = 120
    cfg["data"] = {"source": "local", "local": {"path": str(folder), "catalog": str(folder / "catalog.csv")}}
    cfg["classify"] = dict(cfg.get("classify", {}), questions=[{"name": "ring", "column": "ring"}, "bar"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "--configfile",
           "config.yaml"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for stage in ("structure", "flow", "domain"):
        assert f"stage '{stage}' skipped: colour images (PNG/JPEG) carry no flux calibration" in proc.stderr
    assert "question 'bar' not classified: the catalog has no column" in proc.stderr
    res = tmp_path / "results"
    metrics = pd.read_csv(res / "classify/metrics.csv")
    assert set(metrics["question"]) == {"ring"} and set(metrics["model"]) == {"rf_latent", "cnn_image"}
    assert (metrics["n_test"] > 10).all()
    assert len(pd.read_parquet(res / "outliers/outliers.parquet")) == 117
    assert not (res / "structure").exists() and not (res / "flow").exists()
    assert {p.stem for p in (res / "figures").glob("*.png")} == {"survey_examples", "vae", "outliers", "classify"}
