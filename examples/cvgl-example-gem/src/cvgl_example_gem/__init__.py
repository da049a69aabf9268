"""Example third-party plugin for cvgl-benchmark: a GeM-pooled two-branch CNN."""

from __future__ import annotations

from benchmark.api import ModelCard, ModelSpec, Recipe, hookimpl
from cvgl_example_gem.model import GeM, GeMNet, GeMOptions

__all__ = ["GeM", "GeMNet", "GeMOptions", "SPEC"]

__version__ = "0.1.0"

CARD = ModelCard(
    title="Fine-tuning CNN Image Retrieval with No Human Annotation (GeM pooling)",
    authors="Filip Radenović, Giorgos Tolias, Ondřej Chum",
    venue="IEEE TPAMI 2018",
    url="https://arxiv.org/abs/1711.02512",
    summary=(
        "Example plugin: one small CNN per view (stride-2 Conv-BN-ReLU stages), generalised-mean "
        "pooling with a learned exponent, a linear projection and L2 normalisation; weighted "
        "soft-margin triplet loss; polar-transformed aerial."
    ),
    notes=(
        "This is a teaching example of a third-party package, not a CVGL method from the "
        "literature: the GeM paper is about landmark retrieval and reports no CVGL numbers, "
        "so the card has none.",
    ),
)

SPEC = ModelSpec(
    name="example-gem",
    options=GeMOptions,
    build=GeMNet,
    recipe=Recipe(optimizer="adam", lr=1e-4, batch_size=32, epochs=50),
    card=CARD,
    variants={"paper": {}, "tiny": {"width": 8, "stages": 3, "dim": 64}},
    quick={"model": {"ground_size": (32, 128), "aerial_size": (32, 128)}},
)


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Register the example model."""
    return [SPEC]
