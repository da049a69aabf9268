"""What a method's card reports about its cost, read the same way by `profile` and the
leaderboard (no torch: the leaderboard renders from result files alone)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    """A number with thousands separators and DIGITS decimals; '-' for nothing."""
    if value is None or value == "":
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float | int) else str(value)


def reported_compute(rep: Mapping[str, Any]) -> tuple[float | None, bool, str]:
    """The card's compute figure, whether it is MACs, and its label.

    A paper's own "GFLOPs" (``gflops_reported``, MACs when ``gflops_is_macs``) come first;
    a card whose paper prints none may give a documented count (``gmacs_computed``).
    """
    where = rep.get("input", "?")
    if rep.get("gflops_reported"):
        is_macs = bool(rep.get("gflops_is_macs"))
        label = f"{fmt(rep['gflops_reported'])} ({'MACs' if is_macs else 'FLOPs'}, {where})"
        return rep["gflops_reported"], is_macs, label
    if rep.get("gmacs_computed"):
        label = f"{fmt(rep['gmacs_computed'])} (MACs, computed, {where})"
        return rep["gmacs_computed"], True, label
    return None, True, "-"
