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


def distinguishable(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether Welch's two-sided t-test tells the means of A and B apart at level ALPHA.

    With fewer than two values on either side nothing can be told apart. Identical constant
    samples with different values are apart; equal ones are not.
    """
    if len(a) < 2 or len(b) < 2:
        return False
    if max(a) == min(a) and max(b) == min(b):
        return a[0] != b[0]
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < alpha)
