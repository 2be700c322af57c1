"""Statistics several stages share: the robust spread, the asinh scale, balanced accuracy, the bootstrap.

- :func:`robust_std`: the median absolute deviation from the median divided by
  Φ⁻¹(3/4) ≈ 0.67449 (× 1.482602...), the standard deviation of a Gaussian
  population that a few outliers do not move: ``scipy.stats.median_abs_deviation(scale="normal")``.
- :func:`asinh_scale` / :func:`from_asinh_scale`: the networks' intensity scale,
  ``x = asinh(flux / softening)`` and back, ``flux = softening * sinh(x)``; linear
  for faint pixels (``flux << softening``), logarithmic for bright ones.
- :func:`balanced_accuracy`: the mean over the classes present of each class's recall (a model
  that always answers the majority class scores ``1 / n_classes``; scikit-learn's
  ``balanced_accuracy_score`` without its warning on absent classes).
- :func:`bootstrap_interval`: the percentile interval of a statistic over resampled galaxies
  (with replacement, seeded); given a statistic of two models on the same galaxies, the
  paired bootstrap of their difference.
"""

from __future__ import annotations

from collections.abc import Callable

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


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the classes present in ``true`` of the fraction of that class predicted right; NaN when empty."""
    true, pred = np.asarray(true), np.asarray(pred)
    classes = np.unique(true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[true == c] == c) for c in classes]))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    seed: int | np.random.SeedSequence,
    n_resamples: int = 1000,
    level: float = 0.68,
) -> tuple[float, float]:
    """Central ``level`` percentile interval of ``statistic(idx)`` over ``n_resamples`` resamples of ``range(n)``.

    ``statistic`` takes an index array (``n`` indices drawn with replacement) and returns a
    number; statistics of two models evaluated on the same resampled galaxies give the
    paired bootstrap of their difference. Resamples giving NaN are left out. (NaN, NaN)
    when ``n`` is 0 or no resample gives a number.
    """
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(int(n_resamples))], np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)
