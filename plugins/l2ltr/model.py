"""L2LTR: per view an R50 hybrid stem (timm ResNetV2) and a self-cross attention ViT-B/16."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
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
    flat_state_dict,
    load_into,
    pretrained_state,
)
from plugins.l2ltr.attention import SelfCrossEncoder
from plugins.l2ltr.checkpoint import is_official, official_state
from plugins.l2ltr.pretrained import HUB_MODEL, branch_state

VIT_WEIGHTS = PretrainedWeights(
    name="Google's ImageNet-21k R50+ViT-B/16 weights",
    timm=HUB_MODEL,
    files=f"a safetensors of timm's {HUB_MODEL} (its model.safetensors)",
    url=f"https://huggingface.co/timm/{HUB_MODEL}",
)


class L2LTROptions(ModelOptions):
    """L2LTR options; defaults are Polar-L2LTR (R50+ViT-B/16 per view, 128x512 inputs,
    ImageNet-21k initialisation)."""

    pretrained: bool | str = Field(
        True, description="R50+ViT-B/16 ImageNet-21k: True (timm), a timm-layout file; False"
    )
    stem_layers: tuple[int, ...] = Field((3, 4, 9), description="bottleneck units per ResNet stage")
    stem_channels: tuple[int, ...] = Field((256, 512, 1024), description="stage output widths")
    stem_width: int = Field(64, ge=8, description="root conv channels")
    stem_groups: int = Field(32, ge=1, description="GroupNorm groups in the stem")
    stem_norm: Literal["group", "batch"] = Field(
        "group", description="the stem's norm: BiT's GroupNorm (paper) or BatchNorm (tiny)"
    )
    embed_dim: int = Field(768, ge=8)
    depth: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1)
    mlp_dim: int = Field(3072, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="embedding and MLP dropout")
    self_cross: bool = Field(True, description="False = plain self-attention (paper's ablation)")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.stem_layers) != len(self.stem_channels):
            raise ValueError("stem_layers and stem_channels must have the same length")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads")
        widths = (self.stem_width, *self.stem_channels, *(c // 4 for c in self.stem_channels))
        if self.stem_norm == "batch" and self.pretrained is not False:
            raise ValueError(
                "stem_norm='batch' has no pretrained weights (Google's R50 uses GroupNorm): "
                "set pretrained=false or stem_norm='group'"
            )
        if self.stem_norm == "group" and any(w % self.stem_groups for w in widths):
            raise ValueError(f"every stem width {widths} must be divisible by stem_groups")
        return self

    def pretrained_weights(self) -> PretrainedWeights | None:
        """Google's R50+ViT-B/16, as L2LTR's code starts from."""
        return VIT_WEIGHTS


def token_grid(size: tuple[int, int], stages: int) -> tuple[int, int]:
    """Feature-map (rows, cols) after the stem: 7x7/2 conv, 3x3/2 max-pool, then a stride-2
    first unit in every stage after the first (16 for three stages); each rounds up."""
    stride = 4 * 2 ** (stages - 1)
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


def r50_stem(opts: L2LTROptions) -> nn.Module:
    """timm's ResNetV2 (BiT, post-activation) as in ``vit_base_r50_s16_*``: StdConv + GroupNorm.

    As in L2LTR's PyTorch code: symmetric padding (7x7 pad 3, max-pool pad 1; timm's hybrid
    uses TF 'same' padding), StdConv eps 1e-5, GroupNorm eps 1e-6, and the projection
    shortcut's norm GroupNorm(C, C) with eps 1e-5 (one group per channel). Weights are
    interchangeable with timm's. With ``stem_norm='batch'`` (the tiny variant) every norm is
    a BatchNorm instead.
    """
    from timm.layers import BatchNormAct2d, GroupNormAct, StdConv2d  # on use: a faster CLI
    from timm.models.resnetv2 import ResNetV2

    if opts.stem_norm == "batch":
        norm = BatchNormAct2d
    else:
        norm = partial(GroupNormAct, num_groups=opts.stem_groups, eps=1e-6)
    net = ResNetV2(
        layers=opts.stem_layers,
        channels=opts.stem_channels,
        stem_chs=opts.stem_width,
        num_classes=0,
        global_pool="",
        preact=False,
        stem_type="",
        conv_layer=partial(StdConv2d, eps=1e-5),
        norm_layer=norm,
    )
    for stage in net.stages if opts.stem_norm == "group" else ():
        for block in stage.blocks:
            if block.downsample is not None:
                width = block.downsample.norm.num_channels
                block.downsample.norm = GroupNormAct(
                    width, num_groups=width, eps=1e-5, apply_act=False
                )
    return net


class L2LTRBranch(nn.Module):
    """One view: R50 stem -> 1x1 proj -> [CLS] + position embedding -> self-cross encoder."""

    def __init__(self, opts: L2LTROptions, size: tuple[int, int], view: str) -> None:
        super().__init__()
        self.view = view
        self.size = size
        self.grid = token_grid(size, len(opts.stem_layers))
        dim = opts.embed_dim
        self.backbone = r50_stem(opts)
        self.proj = nn.Conv2d(opts.stem_channels[-1], dim, kernel_size=1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
        self.pos_drop = nn.Dropout(opts.dropout)
        self.encoder = SelfCrossEncoder(
            dim, opts.depth, opts.num_heads, opts.mlp_dim, opts.dropout, opts.self_cross
        )
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> token embeddings h_0 of shape (B, 1 + N, C)."""
        features = self.proj(self.backbone.forward_features(x))
        if tuple(features.shape[-2:]) != self.grid:
            raise BenchmarkError(
                f"L2LTR's {self.view} branch was built for {self.size[0]}x{self.size[1]} inputs "
                f"but got {x.shape[-2]}x{x.shape[-1]}. "
                f"Set model.{self.view}_size to the input size."
            )
        tokens = features.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return self.pos_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> raw (B, C) descriptor: CLS token after the final LayerNorm."""
        return self.encoder(self.embed(x))[:, 0]


class L2LTR(TwoBranchModel):
    """Layer-to-Layer Transformer (Yang, Lu, Zhu, NeurIPS 2021): unshared branches."""

    def __init__(self, opts: L2LTROptions) -> None:
        super().__init__()
        self.ground = L2LTRBranch(opts, opts.ground_size, "ground")
        self.aerial = L2LTRBranch(opts, opts.aerial_size, "aerial")
        self.descriptor_dim = opts.embed_dim
        self.preprocess = Preprocess(opts.ground_size, opts.aerial_size, opts.polar)
        loaded = pretrained_state(opts.pretrained, VIT_WEIGHTS)
        self.initialisation = loaded[1] if loaded else FROM_SCRATCH
        if loaded:
            state, source = flat_state_dict(loaded[0], loaded[1]), loaded[1]
            for branch in (self.ground, self.aerial):
                load_into(branch, branch_state(state, branch.grid, opts.self_cross), source)

    def adapt_checkpoint(
        self, checkpoint: Mapping[str, Any], source: str
    ) -> dict[str, torch.Tensor]:
        """The official train.py's checkpoint (both views) or the harness's own layout."""
        if is_official(checkpoint):
            return official_state(checkpoint, source)
        return super().adapt_checkpoint(checkpoint, source)
