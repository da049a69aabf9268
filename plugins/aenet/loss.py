"""AENet's losses: multiple-hard-negative weighting (MHNW, Eq. 3.2-3.3) and its ablation,
the soft-margin triplet with the batch-hardest negative (Eq. 3.1).

Distances are d = 2 - 2 cos (squared Euclidean of unit vectors, the WSMR convention; the paper
says "Euclidean distance"). Anchors are ground images, references the batch's aerial images;
``symmetric=True`` adds the aerial-anchor direction and averages the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.api import BenchmarkError, LossSpec, pair_distances

REDUCTIONS = ("anchor", "pooled")


def _check_reduction(reduction: str) -> None:
    """Raise a clear error for an unknown MHNW reduction."""
    if reduction not in REDUCTIONS:
        raise BenchmarkError(
            f"MHNW reduction {reduction!r} is unknown; set loss_options.reduction to one of "
            f"{', '.join(REDUCTIONS)}."
        )


def _hardest_terms(d: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per anchor row of D (positive on the diagonal): ln(1 + e^{alpha (d_ap - min_n d_an)})."""
    b = d.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=d.device)
    hardest = d.masked_fill(eye, float("inf")).amin(dim=1)
    return F.softplus(alpha * (d.diagonal() - hardest))


def mhnw_from_distances(
    d: torch.Tensor, alpha: float = 10.0, reduction: str = "anchor"
) -> torch.Tensor:
    """MHNW loss of a distance matrix D[a, n] (anchor a, reference n, positives on the diagonal).

    Hard negatives of anchor a: n != a with d_an < d_ap. With more than one, each gets weight
    w_i = D_i / max_j D_j where D_i = d_ap - d_an_i (a constant: no gradient flows through
    it) and the anchor contributes sum_i w_i ln(1 + e^{alpha D_i}); otherwise it contributes
    the soft-margin term of its hardest negative. REDUCTION 'anchor' divides each anchor's sum
    by its number of terms and averages anchors; 'pooled' divides the batch's total by the
    total number of terms (Eq. 3.3 read literally).
    """
    _check_reduction(reduction)
    b = d.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=d.device)
    margin = d.diagonal().unsqueeze(1) - d  # D_i = d_ap - d_an
    hard = (margin > 0) & ~eye
    count = hard.sum(dim=1)
    hard_margin = margin.detach().masked_fill(~hard, 0.0)
    weights = hard_margin / hard_margin.amax(dim=1, keepdim=True).clamp_min(1e-12)
    weighted = (weights * F.softplus(alpha * margin)).sum(dim=1)
    multi = count > 1
    sums = torch.where(multi, weighted, _hardest_terms(d, alpha))
    terms = torch.where(multi, count, torch.ones_like(count)).to(d.dtype)
    if reduction == "anchor":
        return (sums / terms).mean()
    return sums.sum() / terms.sum()


def batch_hard_from_distances(d: torch.Tensor, alpha: float = 10.0) -> torch.Tensor:
    """Soft-margin triplet with each anchor's batch-hardest negative, averaged over anchors."""
    return _hardest_terms(d, alpha).mean()


class MHNWLoss:
    """The MHNW loss as a loss plugin (alpha 10; ground anchors unless SYMMETRIC)."""

    def __init__(
        self, alpha: float = 10.0, reduction: str = "anchor", symmetric: bool = False
    ) -> None:
        _check_reduction(reduction)
        self.alpha = alpha
        self.reduction = reduction
        self.symmetric = symmetric

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        """MHNW of the batch's ground anchors (and aerial anchors when symmetric)."""
        d = pair_distances(outputs["ground"], outputs["aerial"])  # row = aerial, col = ground
        loss = mhnw_from_distances(d.T, self.alpha, self.reduction)
        if self.symmetric:
            loss = (loss + mhnw_from_distances(d, self.alpha, self.reduction)) / 2
        return loss


class BatchHardSoftMargin:
    """AENet's 'without MHNW' ablation: soft-margin triplet on the batch-hardest negative."""

    def __init__(self, alpha: float = 10.0, symmetric: bool = False) -> None:
        self.alpha = alpha
        self.symmetric = symmetric

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        """Batch-hard soft-margin of the ground anchors (and aerial anchors when symmetric)."""
        d = pair_distances(outputs["ground"], outputs["aerial"])
        loss = batch_hard_from_distances(d.T, self.alpha)
        if self.symmetric:
            loss = (loss + batch_hard_from_distances(d, self.alpha)) / 2
        return loss


LOSSES = [
    LossSpec(
        "mhnw",
        MHNWLoss,
        "AENet's multiple hard negative weighting: weighted soft-margin over every hard "
        "negative, batch-hardest fallback (alpha 10)",
    ),
    LossSpec(
        "soft-margin-batch-hard",
        BatchHardSoftMargin,
        "soft-margin triplet on each anchor's batch-hardest negative (AENet's 'without MHNW')",
    ),
]
