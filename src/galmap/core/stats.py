"""Statistics several stages share: the robust spread and the asinh scale.

- :func:`robust_std`: 1.4826 × the median absolute deviation from the median, the
  standard deviation of a Gaussian population that a few outliers do not move.
- :func:`asinh_scale` / :func:`from_asinh_scale`: the networks' intensity scale,
  ``x = asinh(flux / softening)`` and back, ``flux = softening * sinh(x)``; linear
  for faint pixels (``flux << softening``), logarithmic for bright ones.
"""

from __future__ import annotations

import numpy as np

#: The standard deviation of a Gaussian per unit median absolute deviation (1 / Φ⁻¹(3/4), rounded as it always was).
MAD_TO_SIGMA = 1.4826


def robust_std(values: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)`` over the finite ``values`` (same unit as them); NaN when there are none."""
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def asinh_scale(flux: np.ndarray, softening: np.ndarray | float) -> np.ndarray:
    """``asinh(flux / softening)`` as float32; ``softening`` broadcasts against ``flux`` (same unit)."""
    return np.arcsinh(flux / softening).astype(np.float32)


def from_asinh_scale(x: np.ndarray, softening: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`asinh_scale`: ``softening * sinh(x)`` as float32, in the unit of ``softening``."""
    return (softening * np.sinh(x)).astype(np.float32)
