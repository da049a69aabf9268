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


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """The p-value of Welch's two-sided t-test of the means of A and B (nan with fewer than
    two values on a side).

    When one side does not vary (a method without randomness), it is the one-sample t-test
    of the other side against that value; two constant sides give 0 when their values
    differ, else 1.
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if _constant(a) and _constant(b):
        return 0.0 if abs(a[0] - b[0]) > 1e-9 * max(1.0, abs(a[0])) else 1.0
    if _constant(a) or _constant(b):
        fixed, varied = (a, b) if _constant(a) else (b, a)
        return float(stats.ttest_1samp(varied, fixed[0]).pvalue)
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def distinguishable(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether Welch's two-sided t-test tells the means of A and B apart at level ALPHA
    (never with fewer than two values on a side; see welch_p)."""
    return welch_p(a, b) < alpha
