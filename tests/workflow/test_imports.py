"""Every workflow job imports its stage's ``galmap.<stage>.jobs``: it must not drag in the heavy libraries of stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "galsim", "photutils", "statmorph", "scipy.signal", "sklearn", "matplotlib")
STAGES = (
    "core",
    "mock",
    "data",
    "preprocess",
    "structure",
    "latent",
    "anomalies",
    "classify",
    "domain",
    "images2images",
)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_jobs_import_no_heavy_library(stage):
    module = f"galmap.{stage}.jobs"
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"importing {module} imported {out}; import them inside the functions that need them"


def test_every_script_calls_a_stage_jobs_module():
    """The thin scripts call a stage package (``galmap.<stage>.jobs``), never the dissolved ``galmap.pipeline``."""

    scripts = sorted((Path(__file__).parents[2] / "scripts").glob("*.py"))
    assert scripts
    for path in scripts:
        text = path.read_text()
        assert "galmap.pipeline" not in text, path.name
        assert re.search(r"^from galmap\.\w+\.\w+ import", text, re.M), f"{path.name} calls no stage package"
