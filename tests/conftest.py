"""Shared fixtures: the tiny test configuration, its mock population and rendered shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from galmap.core.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"

# The SLURM executor plugin (if installed) stalls every snakemake start when a
# slurm.conf exists without a controller; local tests never need it.
os.environ.setdefault("SLURM_CONF", "/dev/null")
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def merged_test_config() -> dict:
    """config/test.yaml merged on the embedded default, as the workflow merges them, before validation."""
    from galmap.core.config import load_yaml, merge

    return merge(load_yaml(REPO / "config" / "config.yaml"), load_yaml(REPO / "config" / "test.yaml"))


def run_snakemake(args, cwd, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` in ``cwd`` as a user runs it locally (SLURM_CONF=/dev/null: no SLURM plugin stall)."""
    env = dict(os.environ, SLURM_CONF="/dev/null")
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def with_pipeline_decals_stamps(test_config: dict) -> dict:
    """The test config's ``surveys`` with DECaLS on the default config's stamps (16.8''): galaxies of the
    documented sizes (issue 27) fill the test config's 12.6'' ones, whose sky then holds their wings."""
    default = load_config(REPO / "config" / "config.yaml", SCHEMA)
    decals = dict(test_config["surveys"]["decals"]) | {"stamp_px": default["surveys"]["decals"]["stamp_px"]}
    return dict(test_config["surveys"]) | {"decals": decals}


def with_galaxy(shard, i: int, images=None, ivar=None):
    """A copy of ``shard`` (images, ivar, ids, attrs) with galaxy ``i``'s images or ivar replaced."""
    from galmap.core.io import Shard

    imgs, iv = shard.images.copy(), shard.ivar.copy()
    if images is not None:
        imgs[i] = images
    if ivar is not None:
        iv[i] = ivar
    return Shard(imgs, iv, shard.ids, shard.attrs)


@pytest.fixture(scope="session")
def test_config() -> dict:
    return load_config(REPO / "config" / "test.yaml", SCHEMA)


@pytest.fixture(scope="session")
def default_config() -> dict:
    return load_config(REPO / "config" / "config.yaml", SCHEMA)


@pytest.fixture(scope="session")
def local_run(tmp_path_factory) -> Path:
    """A working directory where the whole DAG of config/test.yaml ran locally (``--cores 2``)."""
    wd = tmp_path_factory.mktemp("run")
    run_snakemake(["--cores", "2", "--configfile", str(REPO / "config" / "test.yaml"), "-q"], wd)
    return wd


@pytest.fixture(scope="session")
def truth(test_config):
    from galmap.mock.population import draw_population

    return draw_population(test_config)


@pytest.fixture(scope="session")
def surveys(test_config):
    from galmap.core.surveys import surveys_from_config

    return surveys_from_config(test_config)


@pytest.fixture(scope="session")
def rendered(test_config, truth, surveys):
    """The test population rendered (with noise) in every test survey."""
    from galmap.core.failures import FailureLog
    from galmap.mock.render import render_shard

    failures = FailureLog("data")
    shards = render_shard(truth, list(surveys.values()), test_config["seed"], failures, progress=False)
    assert len(failures) == 0, failures.frame()
    return shards
