"""Confidence intervals for the evaluation tables (every task's)."""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964


def wilson_interval(solved: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion solved / n (95% for the default z)."""
    if n == 0:
        return 0.0, 1.0
    p = solved / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exact at the ends (rounding would leave 1e-19 above 0 solved, which a plot's error bar refuses)
    lo = 0.0 if solved == 0 else max(0.0, centre - half)
    hi = 1.0 if solved == n else min(1.0, centre + half)
    return lo, hi


def mean_interval(values, z: float = Z95) -> tuple[float, float]:
    """The normal-approximation interval of the mean of `values` (one number per independent sample, e.g. a
    sequence's accuracy), clipped to [0, 1]; (0, 1) for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0, 1.0
    half = z * float(v.std(ddof=1)) / math.sqrt(v.size)
    m = float(v.mean())
    return max(0.0, m - half), min(1.0, m + half)
