"""Intervals and distinguishability as the leaderboard states them."""

from __future__ import annotations

import math

import pytest

from benchmark.stats import distinguishable, mean_interval


def test_interval_is_the_student_t_half_width() -> None:
    mean, half = mean_interval([40.0, 42.0, 44.0])
    # sd 2, n 3: t(0.975, 2) = 4.302653 -> 4.302653 * 2 / sqrt(3)
    assert mean == 42.0
    assert half == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6)
    assert math.isnan(mean_interval([5.0])[1])


def test_rows_far_apart_are_distinguishable_and_overlapping_ones_are_not() -> None:
    assert distinguishable([88.0, 89.0, 88.5], [40.0, 45.0, 42.0])
    assert not distinguishable([41.8, 51.8, 56.0], [45.0, 50.0, 48.0])
    assert not distinguishable([50.0], [10.0, 11.0])  # one seed says nothing
    assert distinguishable([2.0, 2.0, 2.0], [3.0, 3.0, 3.0])
    assert not distinguishable([2.0, 2.0], [2.0, 2.0, 2.0])
    # a deterministic baseline against a varying method: the one-sample t-test
    assert distinguishable([2.8, 2.8 + 4e-16, 2.8], [40.0, 45.0, 42.0])
    assert not distinguishable([2.8, 2.8, 2.8], [1.67, 1.0, 2.6])
