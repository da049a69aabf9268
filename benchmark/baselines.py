"""Reference floors that need no training: raw-pixel matching of ground vs polar aerial."""

from __future__ import annotations

import torch

from benchmark.api import (
    CrossViewModel,
    ModelCard,
    ModelOptions,
    ModelSpec,
    Preprocess,
    Recipe,
    l2n,
)


class RawPixels(CrossViewModel):
    """Descriptor = the normalised input pixels themselves (cosine similarity of images)."""

    def __init__(self, opts: ModelOptions) -> None:
        super().__init__()
        if tuple(opts.ground_size) != tuple(opts.aerial_size):
            raise ValueError("raw-pixel matching needs equal ground and aerial input sizes")
        self.preprocess = Preprocess(opts.ground_size, opts.aerial_size, opts.polar)
        self.descriptor_dim = 3 * opts.ground_size[0] * opts.ground_size[1]

    def embed_ground(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened, L2-normalised ground pixels."""
        return l2n(x.flatten(1))

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened, L2-normalised (polar) aerial pixels."""
        return l2n(x.flatten(1))


RAW_PIXELS = ModelSpec(
    name="raw-pixels",
    options=ModelOptions,
    build=RawPixels,
    recipe=Recipe(epochs=0),
    card=ModelCard(
        title="Raw-pixel baseline (polar aerial vs ground pixels, cosine)",
        authors="-",
        venue="harness baseline",
        url="",
        summary="No learning: the descriptor is the normalised image. A floor every method "
        "must clear; on the synthetic world it shows the task is not solved by pixels.",
    ),
    variants={"paper": {}, "tiny": {}},
    quick={"epochs": 0, "model": {"ground_size": (32, 128), "aerial_size": (32, 128)}},
)
