"""Statistics several stages share: the robust spread and the asinh scale.

- :func:`robust_std`: the median absolute deviation from the median divided by
  Φ⁻¹(3/4) ≈ 0.67449 (× 1.482602...), the standard deviation of a Gaussian
  population that a few outliers do not move: ``scipy.stats.median_abs_deviation(scale="normal")``.
- :func:`asinh_scale` / :func:`from_asinh_scale`: the networks' intensity scale,
  ``x = asinh(flux / softening)`` and back, ``flux = softening * sinh(x)``; linear
  for faint pixels (``flux << softening``), logarithmic for bright ones.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

#: The median absolute deviation of a unit Gaussian, Φ⁻¹(3/4) ≈ 0.67449: a MAD divided by it estimates the
#: standard deviation (scipy's ``median_abs_deviation(scale="normal")``; the one-sided semi-MAD of
#: :func:`galmap.latent.outliers.upper_z` is divided by it too).
NORMAL_MAD = float(special.ndtri(0.75))


def robust_std(values: np.ndarray) -> float:
    """``median(|v - median(v)|) / Φ⁻¹(3/4)`` over the finite ``values`` (same unit as them); NaN when there are none.

    One call of ``scipy.stats.median_abs_deviation(v, scale="normal")`` on the finite values.
    """
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(stats.median_abs_deviation(v, scale="normal"))


def asinh_scale(flux: np.ndarray, softening: np.ndarray | float) -> np.ndarray:
    """``asinh(flux / softening)`` as float32; ``softening`` broadcasts against ``flux`` (same unit)."""
    return np.arcsinh(flux / softening).astype(np.float32)


def from_asinh_scale(x: np.ndarray, softening: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`asinh_scale`: ``softening * sinh(x)`` as float32, in the unit of ``softening``."""
    return (softening * np.sinh(x)).astype(np.float32)
