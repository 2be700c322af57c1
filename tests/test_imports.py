"""Every workflow job imports galmap.pipeline: it must not drag in the heavy libraries of other stages."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "galsim", "photutils", "statmorph", "scipy.signal", "sklearn", "matplotlib")


def test_pipeline_imports_no_stage_library():
    code = f"import sys, galmap.pipeline; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], f"importing galmap.pipeline imported {out}; import them inside the functions that need them"
