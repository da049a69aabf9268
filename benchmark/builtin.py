"""The core's own plugin: the synthetic dataset, shared losses and core metrics."""

from __future__ import annotations

from benchmark.baselines import RAW_PIXELS
from benchmark.data import cvact, cvusa, synthetic_vigor, vigor
from benchmark.data.synthetic import build_synthetic, check_synthetic
from benchmark.hookspecs import hookimpl
from benchmark.losses import LOSSES
from benchmark.metrics import METRICS
from benchmark.specs import DatasetSpec, LossSpec, MetricSpec, ModelSpec


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Baselines that need no training."""
    return [RAW_PIXELS]


@hookimpl
def benchmark_datasets() -> list[DatasetSpec]:
    """The generated cross-view world (no download) and the real CVUSA, CVACT and VIGOR."""
    return [
        DatasetSpec(
            name="synthetic",
            splits=("test",),
            default_split="test",
            build=build_synthetic,
            description="generated cross-view world, CVUSA-like (ground at tile centre)",
            needs_root=False,
            check=check_synthetic,
        ),
        cvusa.SPEC,
        cvact.SPEC,
        vigor.SPEC,
        synthetic_vigor.SPEC,
    ]


@hookimpl
def benchmark_losses() -> list[LossSpec]:
    """Losses shared by several papers."""
    return list(LOSSES)


@hookimpl
def benchmark_metrics() -> list[MetricSpec]:
    """Recall metrics."""
    return list(METRICS)
