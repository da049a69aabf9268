"""VIGOR's network: SAFA aggregation without the polar transform, plus an offset MLP."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from benchmark.api import Size, l2n
from plugins.safa.model import SAFA, SAFAOptions


class VigorOptions(SAFAOptions):
    """VIGOR options; defaults are the paper's (320x640 ground, 320x320 aerial, no polar)."""

    ground_size: Size = Field((320, 640), description="ground input (height, width)")
    aerial_size: Size = Field((320, 320), description="aerial input (height, width)")
    polar: bool = Field(False, description="VIGOR never polar-transforms (queries off-centre)")
    channel_pool: Literal["max", "mean"] = Field(
        "max", description="VIGOR's code pools channels by max (SAFA's official code: mean)"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="VIGOR trains without dropout")
    offset_head: bool = Field(True, description="False = SAFA aggregation only (ablation)")
    offset_hidden: int = Field(512, ge=1, description="hidden width of the offset MLP")


class OffsetHead(nn.Module):
    """FC(2D -> hidden) + ReLU + FC(hidden -> 2), TruncNormal(0, 0.005) weights, bias 0.1."""

    def __init__(self, descriptor_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * descriptor_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )
        for layer in (self.net[0], self.net[2]):
            nn.init.trunc_normal_(layer.weight, std=0.005, a=-0.01, b=0.01)
            nn.init.constant_(layer.bias, 0.1)

    def forward(self, aerial_raw: torch.Tensor, ground_raw: torch.Tensor) -> torch.Tensor:
        """(B, 2) offset of the panorama from the tile centre, in half-tile units (east, north)."""
        return self.net(torch.cat([aerial_raw, ground_raw], dim=1))


class Vigor(SAFA):
    """VIGOR (Zhu, Yang, Chen, CVPR 2021): SAFA branches on raw views + offset regression."""

    def __init__(self, opts: VigorOptions) -> None:
        super().__init__(opts)
        self.predicts_offsets = opts.offset_head
        self.offset = (
            OffsetHead(self.descriptor_dim, opts.offset_hidden) if opts.offset_head else None
        )

    def forward(self, ground: torch.Tensor, aerial: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised and raw descriptors of both views, and the predicted offset."""
        g, a = self.ground(ground), self.aerial(aerial)
        out = {"ground": l2n(g), "aerial": l2n(a), "ground_raw": g, "aerial_raw": a}
        if self.offset is not None:
            out["offset"] = self.offset(a, g)
        return out

    def predict_offsets(self, ground: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        """(B, 2) offsets of each panorama from the centre of the paired tile (half tiles)."""
        if self.offset is None:
            raise ValueError("this VIGOR model was built without an offset head")
        return self.offset(self.aerial(aerial), self.ground(ground))

    def branches(self) -> dict[str, nn.Module]:
        """Ground and aerial branches; the offset head reads both and is counted in both."""
        if self.offset is None:
            return super().branches()
        return {
            "ground": nn.ModuleList([self.ground, self.offset]),
            "aerial": nn.ModuleList([self.aerial, self.offset]),
        }
