"""``data.source: local``: the whole workflow on the real sample cutouts, and what it skips."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from galmap.config import ConfigError, load_yaml, validate_config
from galmap.sources import source_surveys, stage_plan, usable_questions

from .conftest import REPO, SCHEMA, SHARED_DATA

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


@pytest.mark.slow
def test_the_workflow_runs_on_the_real_sample_cutouts(tmp_path):
    local = f"data={{source: local, local: {{path: {FITS_FOLDER}}}}}"  # what a user types after --config
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "--configfile",
           str(REPO / "config" / "test.yaml"), "--config", local]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "stage 'classify' skipped: " in proc.stderr and "stage 'domain' skipped" in proc.stderr
    res = tmp_path / "results"
    catalog = pd.read_parquet(res / "catalog/catalog.parquet")
    ids = set(catalog["id"])
    assert len(ids) == 10
    data_failures = pd.read_csv(res / "data/failures.csv")
    assert list(data_failures["id"]) == ["example_incomplete"] and "cannot be read" in data_failures["reason"][0]
    # no galaxy vanishes: each is in the outputs of every stage that ran (with NaN where it failed)
    for table in ("structure/sersic.parquet", "structure/morphometry.parquet", "vae/z4/latents.parquet",
                  "outliers/outliers.parquet"):  # fmt: skip
        assert set(pd.read_parquet(res / table)["id"]) == ids, table
    latents = pd.read_parquet(res / "vae/z4/latents.parquet").set_index("id")
    assert latents.drop(index="example_incomplete").filter(like="mu").notna().all().all()
    for name in ("survey_examples", "sersic_residuals", "morphometry", "vae", "outliers", "flow"):
        assert (res / f"figures/{name}.png").stat().st_size > 0
    assert not (res / "figures/sersic_truth.png").exists() and not (res / "classify").exists()
