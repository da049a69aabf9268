"""VIGOR's losses: IOU-based semi-positive assignment, offset regression, and their hybrid.

Batches come from VIGOR-style splits (see ``PairDataset``): 'offsets' (B, 4, 2) metres of
the panorama from the positive and semi-positive tile centres, 'semi_slot' (B,) which
semi-positive was loaded as 'semi', and 'tile_metres' (B,) the tile side L.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import BenchmarkError, LossSpec, soft_margin_triplet


def square_iou(offset: torch.Tensor, side: torch.Tensor | float) -> torch.Tensor:
    """IoU of two SIDE x SIDE squares shifted by OFFSET (..., 2): r / (2 - r) (VIGOR)."""
    frac = 1.0 - offset.abs() / torch.as_tensor(side, dtype=offset.dtype)[..., None]
    r = frac.clamp(min=0.0).prod(-1)
    return r / (2.0 - r)


def _require(mapping: Mapping[str, Any], key: str, loss: str, what: str) -> Any:
    if key not in mapping:
        raise BenchmarkError(f"Loss {loss!r} needs {what}.")
    return mapping[key]


SEMI_DATA = "a dataset with semi-positives and offsets (synthetic-vigor or vigor)"


def iou_semi_loss(
    ground: torch.Tensor,
    aerial: torch.Tensor,
    semi: torch.Tensor,
    offsets: torch.Tensor,
    slot: torch.Tensor,
    side: torch.Tensor,
) -> torch.Tensor:
    """mean_b (s_semi / s_pos - IOU_semi / IOU_pos)^2 with cosine similarities s."""
    s_pos = (ground * aerial).sum(-1)
    s_semi = (ground * semi).sum(-1)
    rows = torch.arange(len(offsets), device=offsets.device)
    iou_pos = square_iou(offsets[:, 0], side)
    iou_semi = square_iou(offsets[rows, slot.long()], side)
    return ((s_semi / s_pos - iou_semi / iou_pos) ** 2).mean()


def offset_loss(pred: torch.Tensor, offset: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """mean_b || pred - offset / (L/2) ||^2: the positive offset in half-tile units."""
    target = offset / (torch.as_tensor(side, dtype=offset.dtype)[..., None] / 2)
    return ((pred.float() - target) ** 2).sum(-1).mean()


class IouSemiLoss:
    """The IOU semi-positive loss as a loss plugin (needs 'semi' embeddings)."""

    uses_semi = True

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        semi = _require(outputs, "semi", "iou-semi", SEMI_DATA)
        return iou_semi_loss(
            outputs["ground"],
            outputs["aerial"],
            semi,
            _require(batch, "offsets", "iou-semi", SEMI_DATA).to(semi.device),
            batch["semi_slot"].to(semi.device),
            batch["tile_metres"].to(semi.device),
        )


class OffsetLoss:
    """The offset regression loss as a loss plugin (needs a model with an offset head)."""

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        pred = _require(outputs, "offset", "offset", "a model with an offset head (vigor)")
        offsets = _require(batch, "offsets", "offset", SEMI_DATA).to(pred.device)
        return offset_loss(pred, offsets[:, 0], batch["tile_metres"].to(pred.device))


class VigorHybridLoss:
    """L_triplet + L_IOU / 10 + L_offset / 100 after STAGE1_EPOCHS of triplet only."""

    def __init__(
        self,
        alpha: float = 10.0,
        iou_weight: float = 0.1,
        offset_weight: float = 0.01,
        stage1_epochs: int = 0,
    ) -> None:
        if stage1_epochs < 0:
            raise BenchmarkError("loss_options.stage1_epochs must be >= 0 (0 = hybrid at once).")
        self.alpha = alpha
        self.iou_weight = iou_weight
        self.offset_weight = offset_weight
        self.stage1_epochs = stage1_epochs
        self.epoch = 0
        self.iou = IouSemiLoss()
        self.offset = OffsetLoss()

    def set_epoch(self, epoch: int) -> None:
        """Select the stage of EPOCH (0-based): triplet only while epoch < stage1_epochs."""
        self.epoch = epoch

    @property
    def uses_semi(self) -> bool:
        """Whether this epoch's loss needs semi-positive embeddings (stage 2 only)."""
        return self.epoch >= self.stage1_epochs

    def __call__(
        self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        loss = soft_margin_triplet(outputs["ground"], outputs["aerial"], self.alpha)
        if not self.uses_semi:
            return loss
        return (
            loss
            + self.iou_weight * self.iou(outputs, batch)
            + self.offset_weight * self.offset(outputs, batch)
        )


LOSSES = [
    LossSpec(
        "iou-semi",
        IouSemiLoss,
        "VIGOR IOU semi-positive loss: mean (s_semi/s_pos - IOU_semi/IOU_pos)^2",
    ),
    LossSpec("offset", OffsetLoss, "VIGOR offset regression: mean ||pred - offset/(L/2)||^2"),
    LossSpec(
        "vigor-hybrid",
        VigorHybridLoss,
        "VIGOR: soft-margin triplet + IOU/10 + offset/100 (triplet only for stage1_epochs)",
    ),
]
