"""The model contract: a two-branch network that embeds ground and aerial images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.specs import Preprocess
from benchmark.weights import flat_state_dict


class CrossViewModel(nn.Module):
    """Base class of every method: two branches mapping images to L2-normalised descriptors.

    Subclasses implement ``embed_ground`` and ``embed_aerial`` and set ``preprocess``
    (the input contract the harness applies) and ``descriptor_dim``. ``forward`` returns a
    dict so methods with extra outputs (offsets, raw descriptors) fit the same loop. A model
    that regresses where the ground image lies within its retrieved tile sets
    ``predicts_offsets`` and implements ``predict_offsets``; evaluation then refines the
    top-1 position with it (metre-level metrics).
    ``initialisation`` says where the starting weights came from ('from scratch' or
    'imagenet:<source>'); it is recorded in every result.
    """

    preprocess: Preprocess
    descriptor_dim: int
    initialisation: str = "not stated by the plugin"
    predicts_offsets: bool = False

    def adapt_checkpoint(
        self, checkpoint: Mapping[str, Any], source: str
    ) -> dict[str, torch.Tensor]:
        """This model's state dict from a weights file's contents (``eval --weights``).

        The default takes the harness's own layout; methods with published checkpoints
        override it to map the official layout, naming every tensor they cannot place.
        """
        return flat_state_dict(checkpoint, source)

    def embed_ground(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, D) L2-normalised ground descriptors."""
        raise NotImplementedError

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, D) L2-normalised aerial descriptors."""
        raise NotImplementedError

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embed a batch of pairs; keys 'ground' and 'aerial'."""
        return {"ground": self.embed_ground(ground), "aerial": self.embed_aerial(aerial)}

    def predict_offsets(self, ground: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        """(B, 2) offsets (east, north) of each ground image from the centre of the paired
        aerial tile, in half-tile units; called only when ``predicts_offsets`` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not predict offsets")

    def branches(self) -> dict[str, nn.Module]:
        """The modules of each branch, for per-branch parameter counts (shared ones in both)."""
        return {"ground": self, "aerial": self}


class TwoBranchModel(CrossViewModel):
    """A model with unshared ``ground`` and ``aerial`` modules mapping images to raw
    descriptors; embedding L2-normalises their output."""

    ground: nn.Module
    aerial: nn.Module

    def embed_ground(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised ground descriptor."""
        return l2n(self.ground(x))

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised aerial descriptor."""
        return l2n(self.aerial(x))

    def branches(self) -> dict[str, nn.Module]:
        """Ground and aerial branches (nothing shared)."""
        return {"ground": self.ground, "aerial": self.aerial}


def l2n(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise along the last dimension."""
    return F.normalize(x, p=2, dim=-1)
