"""The whole plugin contract: pluggy hook specifications.

Collecting hooks return lists of specs; every implementation's list is merged by the
registry. Observer hooks are called for their side effects (logging, tracking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pluggy

PROJECT = "cvgl_benchmark"
ENTRY_POINT_GROUP = "cvgl_benchmark"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def benchmark_models() -> list[Any]:
    """Return the ModelSpecs this plugin provides."""


@hookspec
def benchmark_datasets() -> list[Any]:
    """Return the DatasetSpecs this plugin provides."""


@hookspec
def benchmark_losses() -> list[Any]:
    """Return the LossSpecs this plugin provides."""


@hookspec
def benchmark_metrics() -> list[Any]:
    """Return the MetricSpecs this plugin provides."""


@hookspec
def benchmark_on_epoch_end(plugin: str, epoch: int, logs: dict[str, float]) -> None:
    """Called after every training epoch with its logged values."""


@hookspec
def benchmark_on_result(result: Any, path: Path) -> None:
    """Called after a result file has been written."""
