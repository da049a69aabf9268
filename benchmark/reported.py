"""What a method's card reports about its cost, and the one rule by which `profile` and the
leaderboard compare it with a measured cost (no torch: the leaderboard renders from result
files alone)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


def model_overrides(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model options a run changed from its variant's (``RunConfig.model``), pretrained
    weights aside: they do not change cost."""
    return {key: value for key, value in model.items() if key != "pretrained"}


def describes(rep: Mapping[str, Any], variant: str, overrides: Mapping[str, Any]) -> bool:
    """Whether the reported cost REP describes a model of VARIANT with OVERRIDES.

    The rule: a card's reported figures belong to the variant it names for them
    (``reported_cost['variant']``, "paper" when it names none) as the card defines it, so
    only that variant with no model option changed is compared with them.
    """
    return variant == rep.get("variant", "paper") and not model_overrides(overrides)


def _delta(measured: float | None, reported: Any) -> str:
    if measured is None or not isinstance(reported, int | float) or not reported:
        return "-"
    return f"{100 * (measured - reported) / reported:+.1f}%"


@dataclass(frozen=True)
class CostComparison:
    """A measured cost beside the paper's: its parameters and compute as cells, and the
    differences (percent, '-' where the rule of ``describes`` does not compare them)."""

    paper_params: str
    params_delta: str
    paper_compute: str
    compute_delta: str


def compare_cost(
    rep: Mapping[str, Any],
    variant: str,
    overrides: Mapping[str, Any],
    params_m: float | None,
    gmacs: float | None,
) -> CostComparison:
    """The card's reported cost REP beside the measured PARAMS_M and GMACS of a model of
    VARIANT with model OVERRIDES. The paper's compute is compared in its own unit: with our
    GMACs when its figure is MACs, with our GFLOPs (2 x GMACs) otherwise."""
    paper_g, is_macs, paper_compute = reported_compute(rep)
    compared = describes(rep, variant, overrides)
    ours = gmacs if is_macs or gmacs is None else 2 * gmacs
    computed = " (computed)" if rep.get("params_is_computed") else ""
    return CostComparison(
        paper_params=fmt(rep["params_m"]) + computed if rep.get("params_m") else "-",
        params_delta=_delta(params_m, rep.get("params_m")) if compared else "-",
        paper_compute=paper_compute,
        compute_delta=_delta(ours, paper_g) if compared else "-",
    )
