"""The shared statistics: the robust spread is scipy's normal-scaled MAD."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from galmap.core.stats import NORMAL_MAD, robust_std


def test_robust_std_is_scipys_normal_scaled_mad_of_the_finite_values():
    rng = np.random.default_rng(1)
    v = rng.normal(3.0, 2.0, 5001)
    assert robust_std(v) == stats.median_abs_deviation(v, scale="normal")
    assert robust_std(v) == pytest.approx(2.0, rel=0.05)
    with_bad = np.r_[v, np.nan, np.inf, -np.inf]
    assert robust_std(with_bad) == robust_std(v)
    assert np.isnan(robust_std(np.array([np.nan, np.inf])))
    assert np.isnan(robust_std(np.array([])))


def test_the_normal_mad_constant():
    """Φ⁻¹(3/4): 1 / 0.6744897... = 1.482602..., the constant formerly rounded to 1.4826."""
    assert NORMAL_MAD == pytest.approx(0.6744897501960817, abs=0)
    assert 1 / NORMAL_MAD == pytest.approx(1.4826, abs=3e-6)
    assert stats.median_abs_deviation([0.0, 1.0, 2.0], scale="normal") == 1.0 / NORMAL_MAD
