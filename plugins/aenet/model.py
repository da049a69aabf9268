"""AENet: unshared EfficientNetV2 per view, an attention layer, flattened descriptor."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from benchmark.api import (
    BAM,
    CBAM,
    BenchmarkError,
    ModelOptions,
    Preprocess,
    Size,
    TripletAttention,
    TwoBranchModel,
    load_into,
    read_state_dict,
    timm_pretrained,
)

Attention = Literal["triplet", "bam", "cbam", "none"]


class AENetOptions(ModelOptions):
    """AENet options; defaults are the paper's model (EfficientNetV2-S + Triplet Attention)."""

    ground_size: Size = Field((128, 512), description="ground panorama (height, width)")
    aerial_size: Size = Field((128, 512), description="polar aerial (height, width)")
    backbone: str = Field("tf_efficientnetv2_s", description="timm EfficientNet(V2) name")
    attention: Attention = Field("triplet", description="after each backbone (paper ablation)")
    descriptor: Literal["flatten", "gap"] = Field(
        "flatten", description="flatten C*H*W (literal reading) or global average pool (C)"
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        import timm

        if not timm.is_model(name):
            raise ValueError(
                f"{name!r} is not a timm model; use e.g. tf_efficientnetv2_s or test_efficientnet"
            )
        return name


def efficientnet_features(name: str, pretrained: bool | str) -> nn.Module:
    """A timm EfficientNet without classifier or pooling; weights from timm or a local file."""
    import timm

    if pretrained is True:
        return timm_pretrained(name, num_classes=0, global_pool="")
    net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    if pretrained:
        state = read_state_dict(pretrained)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_into(net, state, str(pretrained))
    return net


def feature_hw(size: tuple[int, int], reduction: int) -> tuple[int, int]:
    """Feature-map size after log2(REDUCTION) stride-2 stages (each rounds up)."""
    h, w = size
    for _ in range(int(math.log2(reduction))):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def attention_layer(kind: str, channels: int) -> nn.Module:
    """The attention module of an AENet ablation: triplet, bam, cbam or none."""
    if kind == "triplet":
        return TripletAttention()
    if kind == "bam":
        return BAM(channels)
    if kind == "cbam":
        return CBAM(channels)
    return nn.Identity()


class AENetBranch(nn.Module):
    """One view: backbone features (B, 1280, H/32, W/32) -> attention -> raw descriptor."""

    def __init__(self, opts: AENetOptions, size: tuple[int, int]) -> None:
        super().__init__()
        self.backbone = efficientnet_features(opts.backbone, opts.pretrained)
        channels = int(self.backbone.num_features)
        self.attention = attention_layer(opts.attention, channels)
        self.flatten = opts.descriptor == "flatten"
        h, w = feature_hw(size, int(self.backbone.feature_info[-1]["reduction"]))
        self.output_dim = channels * h * w if self.flatten else channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, output_dim), not normalised."""
        f = self.attention(self.backbone.forward_features(x))
        return f.flatten(1) if self.flatten else f.mean((2, 3))


class AENet(TwoBranchModel):
    """AENet (Xu et al., ERA 2023): two unshared branches, no projection."""

    def __init__(self, opts: AENetOptions) -> None:
        super().__init__()
        self.ground = AENetBranch(opts, opts.ground_size)
        self.aerial = AENetBranch(opts, opts.aerial_size)
        if self.ground.output_dim != self.aerial.output_dim:
            raise BenchmarkError(
                f"AENet's flattened descriptors differ in length (ground "
                f"{self.ground.output_dim}, aerial {self.aerial.output_dim}): give both views "
                "the same input size or use --set model.descriptor=gap."
            )
        self.descriptor_dim = self.ground.output_dim
        cfg = self.ground.backbone.pretrained_cfg
        self.preprocess = Preprocess(
            opts.ground_size,
            opts.aerial_size,
            opts.polar,
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
        )
