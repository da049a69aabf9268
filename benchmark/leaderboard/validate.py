"""What the leaderboard accepts: finite numbers, each within its metric's declared bounds, and
the types the page reads. A result that breaks a rule is rejected, never shown as '-'."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.results import RunResult
from benchmark.specs import MetricDisplay

PROFILE_KEYS = ("params_m", "gmacs", "latency_ms", "descriptor_dim")


class _Read(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class _Config(_Read):
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    limit: int | None = None
    protocol_seed: int | None = None


class _DatasetInfo(_Read):
    train_pairs: int | None = None
    test_queries: int | None = None
    test_references: int | None = None


class _Env(_Read):
    threads: int | None = None


class _Page(_Read):
    """The fields of a result the page reads beyond the typed ones, with the types it needs."""

    config: _Config
    dataset_info: _DatasetInfo
    env: _Env


def _non_finite(value: Any, where: str) -> list[str]:
    """Where VALUE (numbers, nested in mappings and lists) holds something other than a
    finite number: NaN, infinity, a string or another object."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [] if math.isfinite(value) else [f"{where} is {value}"]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _non_finite(v, f"{where}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{where}[{i}]")]
    return [f"{where} is {type(value).__name__} {value!r:.40}, not a number"]


def _outside(value: Any, display: MetricDisplay, where: str) -> list[str]:
    low, high = display.bounds
    if not isinstance(value, int | float) or isinstance(value, bool):
        return [f"{where} is {value!r:.40}, not a number"]
    if (low is not None and value < low) or (high is not None and value > high):
        return [f"{where} = {value} is outside {low} to {high}"]
    return []


def _declared(result: RunResult) -> list[str]:
    """Values that break the display declarations recorded in RESULT."""
    found = []
    for display in result.display:
        value = result.metrics.get(display.key)
        where = f"metrics.{display.key}"
        if value is None:
            continue
        if display.y is None:
            found += _outside(value, display, where)
            continue
        xs = value.get(display.x) if isinstance(value, Mapping) else None
        ys = value.get(display.y) if isinstance(value, Mapping) else None
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            found.append(f"{where} is not a curve of equal-length {display.x} and {display.y}")
            continue
        found += [p for i, y in enumerate(ys) for p in _outside(y, display, f"{where}[{i}]")]
    return found


def problems(result: RunResult) -> list[str]:
    """Why the leaderboard cannot show RESULT (empty when it can)."""
    found = _non_finite(result.metrics, "metrics")
    if not found:
        found += _declared(result)
    profile = {k: result.profile[k] for k in PROFILE_KEYS if k in result.profile}
    found += _non_finite(profile, "profile")
    found += [f"profile.{k} = {v} is negative" for k, v in profile.items() if _negative(v)]
    if result.card is not None:
        found += _non_finite(result.card.reported, "card.reported")
        numbers = {k: v for k, v in result.card.reported_cost.items() if not isinstance(v, str)}
        found += _non_finite(numbers, "card.reported_cost")
    try:
        _Page.model_validate(result.model_dump(include={"config", "dataset_info", "env"}))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            found.append(f"{loc} = {err.get('input')!r:.40}: {err['msg']}")
    return found


def _negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0
