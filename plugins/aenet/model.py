"""AENet: unshared EfficientNetV2 per view, an attention layer, flattened descriptor."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from benchmark.api import (
    BAM,
    CBAM,
    FROM_SCRATCH,
    BenchmarkError,
    ModelOptions,
    Preprocess,
    PretrainedWeights,
    Size,
    TripletAttention,
    TwoBranchModel,
    flat_state_dict,
    load_into,
    pretrained_state,
)

Attention = Literal["triplet", "bam", "cbam", "none"]


class AENetOptions(ModelOptions):
    """AENet options; defaults are the paper's model (EfficientNetV2-S + Triplet Attention)."""

    ground_size: Size = Field((128, 512), description="ground panorama (height, width)")
    aerial_size: Size = Field((128, 512), description="polar aerial (height, width)")
    pretrained: bool | str = Field(
        True, description="ImageNet weights: True (timm's hub), a timm-layout file, or False"
    )
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

    def pretrained_weights(self) -> PretrainedWeights | None:
        """timm's ImageNet weights of the backbone."""
        return PretrainedWeights(
            name=f"ImageNet weights of timm's {self.backbone}",
            timm=self.backbone,
            files=f"a safetensors of timm's {self.backbone}",
            url=f"https://huggingface.co/timm (model {self.backbone})",
        )


def efficientnet_features(
    name: str, weights: tuple[Mapping[str, Any], str] | None = None
) -> nn.Module:
    """A timm EfficientNet without classifier or pooling, initialised from WEIGHTS (a state
    dict in timm's layout and its source, as ``pretrained_state`` returns) when given."""
    import timm

    net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    if weights is not None:
        state, source = flat_state_dict(weights[0], weights[1]), weights[1]
        load_into(net, {k: v for k, v in state.items() if not k.startswith("classifier.")}, source)
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

    def __init__(
        self,
        opts: AENetOptions,
        size: tuple[int, int],
        weights: tuple[Mapping[str, Any], str] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = efficientnet_features(opts.backbone, weights)
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
        weights = pretrained_state(opts.pretrained, opts.pretrained_weights())  # read once
        self.ground = AENetBranch(opts, opts.ground_size, weights)
        self.aerial = AENetBranch(opts, opts.aerial_size, weights)
        self.initialisation = weights[1] if weights else FROM_SCRATCH
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
