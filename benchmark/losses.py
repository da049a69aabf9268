"""Loss plugins shared by many papers.

A loss is built from keyword options and called as ``loss(outputs, batch)``, where
``outputs`` is the model's forward dict (at least 'ground' and 'aerial', L2-normalised,
row i of each forming a positive pair) and ``batch`` is the data batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.specs import LossSpec


def pair_distances(ground: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
    """D[i, j] = 2 - 2 <aerial_i, ground_j>: squared distance of unit vectors (row = aerial)."""
    return 2.0 - 2.0 * aerial @ ground.T


def soft_margin_triplet(
    ground: torch.Tensor, aerial: torch.Tensor, alpha: float = 10.0
) -> torch.Tensor:
    """Weighted soft-margin ranking loss over all in-batch negatives, both directions (CVM-Net).

    Reproduces the reference quirk: the sums include the diagonal (ln 2 each) while the
    divisor is B(B-1); this shifts the value, not the gradient.
    """
    d = pair_distances(ground, aerial)
    pos = torch.diagonal(d)
    b = d.shape[0]
    n = b * (b - 1)
    g2s = F.softplus(alpha * (pos[None, :] - d)).sum() / n
    s2g = F.softplus(alpha * (pos[:, None] - d)).sum() / n
    return (g2s + s2g) / 2


class SoftMarginTriplet:
    """The weighted soft-margin triplet loss as a loss plugin (alpha = 10 by default)."""

    def __init__(self, alpha: float = 10.0) -> None:
        self.alpha = alpha

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        return soft_margin_triplet(outputs["ground"], outputs["aerial"], self.alpha)


LOSSES = [
    LossSpec(
        "soft-margin-triplet",
        SoftMarginTriplet,
        "weighted soft-margin ranking loss, exhaustive in-batch, both directions (CVM-Net/SAFA)",
    )
]
