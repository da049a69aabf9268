"""The training contract between the harness, models and losses, named and typed.

A loss is called as ``loss(outputs, batch)`` once per step. ``outputs`` is the model's
``forward`` dict, ``batch`` the collated data batch (``Batch``). Optional abilities of a loss
are declared by the protocols below and honoured by the training loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NotRequired, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    import torch


class Batch(TypedDict):
    """One training batch, as a loss receives it (B = the global batch under torchrun).

    Every split provides the first four keys. Splits with semi-positives and offsets
    (VIGOR-style) add the last four; a loss that needs them says so in its error message.
    """

    ground: torch.Tensor
    """(B, 3, H, W) ground images, preprocessed for the model."""
    aerial: torch.Tensor
    """(B, 3, H, W) aerial images of the positive tiles, preprocessed for the model."""
    index: torch.Tensor
    """(B,) int64 ground image indices in the training split."""
    aerial_index: torch.Tensor
    """(B,) int64 aerial image indices of the positives."""
    semi: NotRequired[torch.Tensor]
    """(B, 3, H, W) one semi-positive aerial image per row, chosen from (seed, epoch, index)."""
    semi_slot: NotRequired[torch.Tensor]
    """(B,) int64 column (1..k) of ``semi`` in ``offsets``."""
    offsets: NotRequired[torch.Tensor]
    """(B, 1 + k, 2) float32 metres (east, north) of the ground point from the positive's
    centre (column 0) and from each semi-positive's centre."""
    tile_metres: NotRequired[torch.Tensor]
    """(B,) float64 side of an aerial tile in metres."""


Outputs = Mapping[str, "torch.Tensor"]
"""A model's ``forward`` dict: 'ground' and 'aerial' (B, D) L2-normalised descriptors, row i
of each a positive pair, plus any extra outputs of the model (e.g. VIGOR's 'offset'). The
training loop adds 'semi' (B, D), the embedded semi-positives, for a SemiPositiveLoss."""


@runtime_checkable
class Loss(Protocol):
    """What LossSpec.build returns: a callable from one step's outputs and batch to a scalar."""

    def __call__(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        """The scalar loss of the batch (differentiable, finite)."""
        ...


@runtime_checkable
class StagedLoss(Loss, Protocol):
    """A loss that changes with the epoch (e.g. VIGOR: triplet only, then hybrid)."""

    def set_epoch(self, epoch: int) -> None:
        """Called before every epoch (0-based, also after a resume) with its index."""
        ...


@runtime_checkable
class SemiPositiveLoss(Loss, Protocol):
    """A loss that needs the semi-positive images embedded.

    While ``uses_semi`` is true (it may be a property that follows ``set_epoch``) and the
    batch has 'semi', the loop embeds it with ``embed_aerial`` and passes it as
    ``outputs['semi']``; while false, the extra forward pass is skipped.
    """

    uses_semi: bool
