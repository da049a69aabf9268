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

from benchmark.errors import BenchmarkError
from benchmark.specs import LossSpec


def pair_distances(ground: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
    """D[i, j] = 2 - 2 <aerial_i, ground_j>: squared distance of unit vectors (row = aerial)."""
    return 2.0 - 2.0 * aerial @ ground.T


def soft_margin_triplet(
    ground: torch.Tensor,
    aerial: torch.Tensor,
    alpha: float = 10.0,
    useful: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted soft-margin ranking loss over all in-batch negatives, both directions (CVM-Net).

    Reproduces the reference quirk: the sums include the diagonal (ln 2 each) while the
    divisor is B(B-1); this shifts the value, not the gradient. USEFUL (B, B), 1 where a pair
    counts, is SAFA's CVACT mask: the margin of every other pair is zeroed (a constant ln 2,
    no gradient) and the divisor is the number of useful pairs, as in its code.
    """
    d = pair_distances(ground, aerial)
    pos = torch.diagonal(d)
    b = d.shape[0]
    if useful is None:
        mask, n = 1.0, b * (b - 1)
    else:
        mask, n = useful.to(d.dtype), useful.sum().clamp_min(1)
    g2s = F.softplus(alpha * (pos[None, :] - d) * mask).sum() / n
    s2g = F.softplus(alpha * (pos[:, None] - d) * mask).sum() / n
    return (g2s + s2g) / 2


def far_pairs(xy: torch.Tensor, metres: float) -> torch.Tensor:
    """(B, B) 1 where positions XY (B, 2) are at least METRES apart (0 on the diagonal)."""
    xy = xy.double()  # UTM metres are ~1e6: float32 would round them to 0.5 m
    return (((xy[:, None] - xy[None]) ** 2).sum(-1) >= metres**2).float()


class SoftMarginTriplet:
    """The weighted soft-margin triplet loss as a loss plugin (alpha = 10 by default).

    With MIN_NEGATIVE_DISTANCE_M, pairs whose ground positions are closer than that many
    metres are not negatives (SAFA's CVACT training: 25 m on UTM positions); the batch must
    carry 'ground_xy'.
    """

    def __init__(self, alpha: float = 10.0, min_negative_distance_m: float | None = None) -> None:
        self.alpha = alpha
        self.min_negative_distance_m = min_negative_distance_m

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        useful = None
        if self.min_negative_distance_m is not None:
            if "ground_xy" not in batch:
                raise BenchmarkError(
                    "The loss option min_negative_distance_m needs the ground positions in "
                    "metres, and this dataset has none (CVUSA gives no positions). Remove the "
                    "option (--set loss_options.min_negative_distance_m=null)."
                )
            xy = batch["ground_xy"].to(outputs["ground"].device)
            useful = far_pairs(xy, self.min_negative_distance_m)
        return soft_margin_triplet(outputs["ground"], outputs["aerial"], self.alpha, useful)


LOSSES = [
    LossSpec(
        "soft-margin-triplet",
        SoftMarginTriplet,
        "weighted soft-margin ranking loss, exhaustive in-batch, both directions (CVM-Net/SAFA)",
    )
]
