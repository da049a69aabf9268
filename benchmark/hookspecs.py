"""The hooks a plugin package may implement (pluggy hook specifications).

Collecting hooks return lists of specs; the registry checks each list when the package
loads. Observer hooks are called for their side effects (logging, tracking). Any function
of a plugin module whose name starts with ``benchmark_`` is taken as a hook implementation,
with or without ``@hookimpl``, so a misspelled hook name is an error, never ignored.

Each hook says since which API version it has its current form (``benchmark.api.API_VERSION``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from benchmark.results import RunResult
    from benchmark.specs import DatasetSpec, LossSpec, MetricSpec, ModelSpec

PROJECT = "cvgl_benchmark"
ENTRY_POINT_GROUP = "cvgl_benchmark"
HOOK_PREFIX = "benchmark_"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

COLLECTING = {
    "models": "benchmark_models",
    "datasets": "benchmark_datasets",
    "losses": "benchmark_losses",
    "metrics": "benchmark_metrics",
}
OBSERVERS = ("benchmark_on_epoch_end", "benchmark_on_result")


@hookspec
def benchmark_models() -> list[ModelSpec]:
    """Return the ModelSpecs of the methods this package provides (one per method).

    .. versionchanged:: 1.0
        Specs are validated when the package loads (variants ``paper`` and ``tiny``
        required, quick settings checked against the run configuration); each name must be
        declared in the package's ``cvgl_benchmark.methods`` entry-point group.
    """


@hookspec
def benchmark_datasets() -> list[DatasetSpec]:
    """Return the DatasetSpecs this package provides.

    .. versionchanged:: 1.0
        Validated when the package loads; names declared in ``cvgl_benchmark.datasets``.
    """


@hookspec
def benchmark_losses() -> list[LossSpec]:
    """Return the LossSpecs this package provides; each builds a ``benchmark.api.Loss``.

    .. versionchanged:: 1.0
        Validated when the package loads; names declared in ``cvgl_benchmark.losses``.
    """


@hookspec
def benchmark_metrics() -> list[MetricSpec]:
    """Return the MetricSpecs this package provides; each computes from an ``Evaluation``.

    .. versionchanged:: 1.0
        Validated when the package loads; names declared in ``cvgl_benchmark.metrics``.
    """


@hookspec(
    warn_on_impl_args={
        "plugin": DeprecationWarning(
            "benchmark_on_epoch_end(plugin=...) is deprecated since API 1.0: take 'method' "
            "(the same value, the method's name)."
        )
    }
)
def benchmark_on_epoch_end(method: str, epoch: int, logs: dict[str, float], plugin: str) -> None:
    """Called on the main process after every training epoch of METHOD with its logged values
    (``epoch`` is 1-based; ``logs`` holds 'epoch', 'loss' and 'lr').

    .. versionchanged:: 1.0
        Added ``method``; ``plugin`` (the same value) is deprecated.
    """


@hookspec
def benchmark_on_result(result: RunResult, path: Path) -> None:
    """Called after a result file has been written at PATH (also for failed runs).

    .. versionadded:: 0.1
    """
