"""SAFA: VGG16 per branch, an extra 2x2 pool, spatial-aware feature aggregation (SAFA)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from benchmark.api import (
    FROM_SCRATCH,
    VGG16_CFG,
    Size,
    TwoBranchModel,
    VGGOptions,
    vgg16_weights,
    vgg_preprocess,
    vgg_trunk,
)

TINY_CFG: tuple[int | str, ...] = (16, "M", 32, "M", 64, 64, "M", 128, 128)


class SAFAOptions(VGGOptions):
    """SAFA options; defaults are the official code's configuration (112x616, mean pooling,
    ImageNet VGG16)."""

    ground_size: Size = Field((112, 616), description="ground input (height, width)")
    aerial_size: Size = Field((112, 616), description="aerial input (height, width)")
    pretrained: bool | str = Field(
        True, description="ImageNet VGG16: True (timm), a vgg16.npy or a timm-layout file; False"
    )
    backbone: Literal["vgg16", "tiny"] = Field("vgg16", description="tiny = 3-stage narrow VGG+BN")
    heads: int = Field(8, ge=1, le=64)
    channel_pool: Literal["max", "mean"] = Field(
        "mean", description="mean is the official SAFA code; max the paper text and VIGOR"
    )
    dropout: float = Field(0.2, ge=0.0, lt=1.0)


def pooled_hw(size: tuple[int, int], cfg: tuple[int | str, ...]) -> tuple[int, int]:
    """Feature-map size after the trunk's ceil-mode pools and SAFA's extra 2x2 pool."""
    pools = cfg.count("M") + 1
    h, w = size
    for _ in range(pools):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


class SpatialAwareAggregation(nn.Module):
    """SAFA's spatial-aware position embedding: one 2-layer linear MLP per head.

    From a (B, C, H, W) map: channel pooling -> (B, P); head k computes A_k = W2(W1 m)
    (P -> P/2 -> P, no non-linearity), then g_k = sum_p A_k[p] F[:, p]; heads are
    concatenated head-major to a (B, heads*C) raw (unnormalised) descriptor.
    """

    def __init__(self, positions: int, heads: int = 8, channel_pool: str = "max") -> None:
        super().__init__()
        hidden = max(1, positions // 2)
        self.channel_pool = channel_pool
        self.w1 = nn.Parameter(torch.empty(heads, positions, hidden))
        self.b1 = nn.Parameter(torch.full((heads, hidden), 0.1))
        self.w2 = nn.Parameter(torch.empty(heads, hidden, positions))
        self.b2 = nn.Parameter(torch.full((heads, positions), 0.1))
        nn.init.trunc_normal_(self.w1, std=0.005, a=-0.01, b=0.01)
        nn.init.trunc_normal_(self.w2, std=0.005, a=-0.01, b=0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, heads * C)."""
        flat = features.flatten(2)  # (B, C, P)
        m = flat.amax(1) if self.channel_pool == "max" else flat.mean(1)  # (B, P)
        h = torch.einsum("bp,kpq->bkq", m, self.w1) + self.b1
        a = torch.einsum("bkq,kqp->bkp", h, self.w2) + self.b2  # (B, heads, P)
        return torch.einsum("bkp,bcp->bkc", a, flat).flatten(1)


class SAFABranch(nn.Module):
    """One view: VGG trunk -> extra 2x2 max-pool -> SAFA aggregation (raw descriptor)."""

    def __init__(
        self,
        opts: SAFAOptions,
        size: tuple[int, int],
        weights: tuple[dict[str, torch.Tensor], str] | None = None,
    ) -> None:
        super().__init__()
        tiny = opts.backbone == "tiny"
        cfg = TINY_CFG if tiny else VGG16_CFG
        self.trunk = vgg_trunk(
            cfg,
            weights=weights,
            batch_norm=tiny,
            dropout=opts.dropout,
            dropout_from=3 if tiny else 4,
        )
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        h, w = pooled_hw(size, cfg)
        self.safa = SpatialAwareAggregation(h * w, opts.heads, opts.channel_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> raw (B, heads * C) descriptor."""
        return self.safa(self.pool(self.trunk(x)))


class SAFA(TwoBranchModel):
    """Spatial-Aware Feature Aggregation (Shi et al., NeurIPS 2019): unshared branches."""

    def __init__(self, opts: SAFAOptions) -> None:
        super().__init__()
        tiny = opts.backbone == "tiny"
        weights = vgg16_weights(opts.pretrained)  # read once, copied into both branches
        self.ground = SAFABranch(opts, opts.ground_size, weights)
        self.aerial = SAFABranch(opts, opts.aerial_size, weights)
        channels = [c for c in (TINY_CFG if tiny else VGG16_CFG) if c != "M"][-1]
        self.descriptor_dim = opts.heads * int(channels)
        self.initialisation = weights[1] if weights else FROM_SCRATCH
        # a Caffe vgg16.npy takes BGR with Caffe means; timm's (torchvision) VGG16 RGB/ImageNet
        self.preprocess = vgg_preprocess(
            opts.ground_size, opts.aerial_size, opts.polar, opts.pretrained
        )
