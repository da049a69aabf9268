"""SAIG: per view a 6-conv stem, attention-only transformer blocks and an SMD or GAP head."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Self

import torch
from pydantic import Field, model_validator
from torch import nn

from benchmark.api import (
    FROM_SCRATCH,
    BenchmarkError,
    ModelOptions,
    Preprocess,
    PretrainedWeights,
    TwoBranchModel,
    load_into,
    pretrained_state,
)
from plugins.saig.checkpoint import imagenet_backbone_state, is_official, official_state

STEM_STRIDES = (2, 2, 1, 2, 1, 2)
STRIDE = math.prod(STEM_STRIDES)
LN_EPS = 1e-6
SAIG_MEAN_STD = (0.5, 0.5, 0.5)


class SAIGOptions(ModelOptions):
    """SAIG options; defaults are the paper's SAIG-D + SMD, aerial non-polar 256x256."""

    aerial_size: tuple[int, int] = Field((256, 256), description="aerial input (height, width)")
    pretrained: bool | str = Field(
        True, description="the authors' ImageNet-1k SAIG weights (a local file); False"
    )
    polar: bool = Field(False, description="polar-transform the aerial image")
    depth: int = Field(22, ge=1, description="attention blocks: 22 = SAIG-D, 11 = SAIG-S")
    embed_dim: int = Field(384, ge=8)
    num_heads: int = Field(12, ge=1)
    stem_channels: tuple[int, int, int, int, int, int] = Field(
        (64, 128, 128, 256, 256, 512), description="output channels of the six 3x3 stem convs"
    )
    head: Literal["smd", "gap"] = Field("smd", description="SMD (8 x C) or global average pooling")
    smd_outputs: int = Field(8, ge=1, description="SMD's mixed spatial outputs per channel")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads")
        return self

    def pretrained_weights(self) -> PretrainedWeights | None:
        """The authors' ImageNet-1k SAIG-D (22 blocks) or SAIG-S (11) backbone."""
        name = {22: "SAIG-D", 11: "SAIG-S"}.get(self.depth, f"SAIG ({self.depth} blocks)")
        return PretrainedWeights(
            name=f"the authors' ImageNet-1k {name} weights",
            timm=None,
            files=f"the {name.replace('-', '_')}.pth.tar checkpoint as published",
            url="https://github.com/yanghongji2007/SAIG, README 'pre-trained model'",
        )


def token_grid(size: tuple[int, int]) -> tuple[int, int]:
    """Token (rows, cols) after the stride-16 stem (each stride-2 conv with padding 1 rounds up)."""
    return math.ceil(size[0] / STRIDE), math.ceil(size[1] / STRIDE)


def conv_stem(channels: tuple[int, ...], dim: int) -> nn.Sequential:
    """Six 3x3 convs (with bias) each followed by BatchNorm + ReLU, then a 1x1 projection."""
    layers: list[nn.Module] = []
    previous = 3
    for out, stride in zip(channels, STEM_STRIDES, strict=True):
        layers += [
            nn.Conv2d(previous, out, 3, stride, 1),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        previous = out
    layers.append(nn.Conv2d(previous, dim, 1))
    return nn.Sequential(*layers)


class AttentionBlock(nn.Module):
    """SAIG's block: x + MHSA(LayerNorm(x)), with no MLP sub-block."""

    def __init__(self, dim: int, num_heads: int) -> None:
        from timm.layers import Attention  # imported on use: the CLI starts faster

        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return x + self.attn(self.norm(x))


class SAIGBackbone(nn.Module):
    """Conv stem -> tokens + learnable position embedding -> attention blocks -> LayerNorm."""

    def __init__(self, opts: SAIGOptions, size: tuple[int, int], view: str) -> None:
        super().__init__()
        self.view = view
        self.size = size
        self.grid = token_grid(size)
        self.stem = conv_stem(opts.stem_channels, opts.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.grid), opts.embed_dim))
        self.blocks = nn.Sequential(
            *(AttentionBlock(opts.embed_dim, opts.num_heads) for _ in range(opts.depth))
        )
        self.norm = nn.LayerNorm(opts.embed_dim, eps=LN_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, C) normalised tokens."""
        features = self.stem(x)
        if tuple(features.shape[-2:]) != self.grid:
            raise BenchmarkError(
                f"SAIG's {self.view} branch was built for {self.size[0]}x{self.size[1]} inputs "
                f"but got {x.shape[-2]}x{x.shape[-1]}. "
                f"Set model.{self.view}_size to the input size."
            )
        tokens = features.flatten(2).transpose(1, 2)
        return self.norm(self.blocks(tokens + self.pos_embed))


class SMD(nn.Module):
    """Spatial-Mixed feature aggregation: a token-mixing MLP N -> 4N -> N -> K per channel.

    (B, N, C) -> (B, K * C) with output index k * C + c.
    """

    def __init__(self, tokens: int, outputs: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(tokens, 4 * tokens)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * tokens, tokens)
        self.fc3 = nn.Linear(tokens, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix along the token axis, independently for every channel."""
        y = self.fc3(self.fc2(self.act(self.fc1(x.transpose(1, 2)))))  # (B, C, K)
        return y.transpose(1, 2).flatten(1)


class GAP(nn.Module):
    """Global average pooling over tokens: (B, N, C) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the token axis."""
        return x.mean(1)


class SAIGBranch(nn.Module):
    """One view: SAIG backbone followed by its aggregation head (raw descriptor)."""

    def __init__(self, opts: SAIGOptions, size: tuple[int, int], view: str) -> None:
        super().__init__()
        self.backbone = SAIGBackbone(opts, size, view)
        tokens = math.prod(self.backbone.grid)
        self.head = SMD(tokens, opts.smd_outputs) if opts.head == "smd" else GAP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> raw descriptor."""
        return self.head(self.backbone(x))


class SAIG(TwoBranchModel):
    """Simple Attention-based Image Geo-localization (Zhu, Yang, Lu, Huang, 2023)."""

    def __init__(self, opts: SAIGOptions) -> None:
        super().__init__()
        self.ground = SAIGBranch(opts, opts.ground_size, "ground")
        self.aerial = SAIGBranch(opts, opts.aerial_size, "aerial")
        self.descriptor_dim = opts.embed_dim * (opts.smd_outputs if opts.head == "smd" else 1)
        self.preprocess = Preprocess(
            opts.ground_size, opts.aerial_size, opts.polar, mean=SAIG_MEAN_STD, std=SAIG_MEAN_STD
        )
        loaded = pretrained_state(opts.pretrained, opts.pretrained_weights())
        self.initialisation = loaded[1] if loaded else FROM_SCRATCH
        if loaded:
            checkpoint, source = loaded
            for branch in (self.ground, self.aerial):
                state = imagenet_backbone_state(checkpoint, branch.backbone.grid, source)
                load_into(branch.backbone, state, source)

    def adapt_checkpoint(
        self, checkpoint: Mapping[str, Any], source: str
    ) -> dict[str, torch.Tensor]:
        """An official two-view model (train.py / train_sam.py) or the harness's own layout."""
        if is_official(checkpoint):
            return official_state(checkpoint, source)
        return super().adapt_checkpoint(checkpoint, source)
