"""Statistics the leaderboard states: means with 95% intervals over seeds, and which rows
can be told apart."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its two-sided 95% Student-t interval (nan with one value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def _constant(values: Sequence[float]) -> bool:
    """Whether VALUES are equal up to float rounding (a deterministic method's seeds)."""
    return max(values) - min(values) <= 1e-9 * max(1.0, max(abs(v) for v in values))


def distinguishable(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether Welch's two-sided t-test tells the means of A and B apart at level ALPHA.

    With fewer than two values on either side nothing can be told apart. When one side does
    not vary (a method without randomness), Welch's test is the one-sample t-test of the
    other side against that value; two constant sides are apart when their values differ.
    """
    if len(a) < 2 or len(b) < 2:
        return False
    if _constant(a) and _constant(b):
        return abs(a[0] - b[0]) > 1e-9 * max(1.0, abs(a[0]))
    if _constant(a) or _constant(b):
        fixed, varied = (a, b) if _constant(a) else (b, a)
        return bool(stats.ttest_1samp(varied, fixed[0]).pvalue < alpha)
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < alpha)
