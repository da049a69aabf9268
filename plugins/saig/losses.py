"""SAIG's alternative losses as loss plugins usable by any model: InfoNCE and semi-triplet.

Both take L2-normalised descriptors with row i of 'ground' and 'aerial' forming a pair.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.api import BenchmarkError, LossSpec, pair_distances


def _check_batch(ground: torch.Tensor, loss: str) -> int:
    """Batch size, or a clear error when there is no in-batch negative."""
    b = ground.shape[0]
    if b < 2:
        raise BenchmarkError(f"The {loss} loss needs in-batch negatives: use batch_size >= 2.")
    return b


def info_nce(ground: torch.Tensor, aerial: torch.Tensor, temperature: float = 0.02) -> torch.Tensor:
    """InfoNCE over S = aerial @ ground^T concatenated with S^T minus its duplicate diagonal.

    Row i of the logits holds <aerial_i, ground_j> for all j, then <ground_i, aerial_j>
    for j != i: a (B, 2B-1) matrix whose target is column i; cross-entropy at TEMPERATURE.
    """
    b = _check_batch(ground, "infonce")
    s = aerial @ ground.T
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=s.device)
    transposed = s.T[off_diagonal].view(b, b - 1)
    logits = torch.cat([s, transposed], dim=1) / temperature
    return F.cross_entropy(logits, torch.arange(b, device=s.device))


def semi_triplet(ground: torch.Tensor, aerial: torch.Tensor, alpha: float = 10.0) -> torch.Tensor:
    """Soft-margin triplet on each anchor's k = floor(sqrt(B)) closest negatives, both ways.

    With D[i, j] = 2 - 2 <aerial_i, ground_j>: a ground anchor j uses the k smallest D[i, j]
    (i != j), an aerial anchor i the k smallest D[i, j] (j != i); each direction averages
    softplus(alpha * (D_pos - D_neg)); the result is the mean of the two directions.
    """
    b = _check_batch(ground, "semi-triplet")
    k = math.isqrt(b)
    d = pair_distances(ground, aerial)
    pos = torch.diagonal(d)
    negatives = d.masked_fill(torch.eye(b, dtype=torch.bool, device=d.device), float("inf"))
    hard_g = negatives.topk(k, dim=0, largest=False).values  # (k, B): per ground anchor
    hard_a = negatives.topk(k, dim=1, largest=False).values  # (B, k): per aerial anchor
    g2s = F.softplus(alpha * (pos[None, :] - hard_g)).mean()
    s2g = F.softplus(alpha * (pos[:, None] - hard_a)).mean()
    return (g2s + s2g) / 2


class InfoNCE:
    """InfoNCE (SAIG's `utils/loss.py` variant) as a loss plugin; temperature 0.02."""

    def __init__(self, temperature: float = 0.02) -> None:
        if temperature <= 0:
            raise BenchmarkError(f"infonce temperature must be positive, got {temperature}.")
        self.temperature = temperature

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        return info_nce(outputs["ground"], outputs["aerial"], self.temperature)


class SemiTriplet:
    """SAIG's semi-hard soft-margin triplet ("SemiSoftTriHard") as a loss plugin; alpha 10."""

    def __init__(self, alpha: float = 10.0) -> None:
        self.alpha = alpha

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        return semi_triplet(outputs["ground"], outputs["aerial"], self.alpha)


LOSSES = [
    LossSpec(
        "infonce",
        InfoNCE,
        "InfoNCE on [S, S^T without its diagonal], temperature 0.02 (SAIG)",
    ),
    LossSpec(
        "semi-triplet",
        SemiTriplet,
        "soft-margin triplet on the floor(sqrt(B)) hardest in-batch negatives, both ways (SAIG)",
    ),
]
