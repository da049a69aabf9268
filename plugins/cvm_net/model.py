"""CVM-Net (Hu et al., CVPR 2018): VGG16 per view, NetVLAD, a shared projection."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from benchmark.api import (
    FROM_SCRATCH,
    VGG16_CFG,
    CrossViewModel,
    NetVLAD,
    Size,
    VGGOptions,
    l2n,
    vgg16_weights,
    vgg_preprocess,
    vgg_trunk,
)

# Four narrow stages with BatchNorm, for training from scratch on a CPU.
TINY_CFG: tuple[int | str, ...] = (16, "M", 32, "M", 64, "M", 128, 128)


class CVMNetOptions(VGGOptions):
    """CVM-Net options; defaults are CVM-Net-I as the official code runs it (224x1232 ground,
    512x512 aerial, ImageNet VGG16 with conv1-3 frozen)."""

    ground_size: Size = Field((224, 1232), description="ground panorama (height, width)")
    aerial_size: Size = Field((512, 512), description="aerial tile (height, width), resized")
    polar: bool = Field(False, description="CVM-Net predates the polar transform")
    pretrained: bool | str = Field(
        True, description="ImageNet VGG16: True (timm), a vgg16.npy or a timm-layout file; False"
    )
    version: Literal["I", "II"] = Field("I", description="I = NetVLAD per view; II = shared")
    backbone: Literal["vgg16", "tiny"] = Field("vgg16", description="tiny = 4-stage VGG+BN")
    clusters: int = Field(64, ge=1, le=1024, description="NetVLAD clusters K")
    fc_dim: int = Field(4096, ge=1, le=65_536, description="descriptor length after the FC")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="after conv4_x/conv5_x ReLUs")
    frozen_stages: int = Field(
        3, ge=0, le=5, description="VGG stages frozen on pretrained weights (paper: conv1-3)"
    )


def _trunk(
    opts: CVMNetOptions, weights: tuple[dict[str, torch.Tensor], str] | None
) -> tuple[nn.Sequential, int]:
    """One view's VGG trunk (conv1_1..conv5_3 or the tiny cfg) and its output channels.
    Stages are frozen only when the trunk starts from pretrained weights."""
    tiny = opts.backbone == "tiny"
    cfg = TINY_CFG if tiny else VGG16_CFG
    trunk = vgg_trunk(
        cfg,
        weights=weights,
        batch_norm=tiny,
        dropout=opts.dropout,
        dropout_from=3 if tiny else 4,
        freeze_until=opts.frozen_stages + 1 if opts.pretrained else 0,
    )
    channels = int([c for c in cfg if c != "M"][-1])
    return trunk, channels


def _shared_fc(in_dim: int, out_dim: int) -> nn.Linear:
    """CVM-Net-I's Siamese FC: TruncNormal(0, 0.005) weights, bias 0.1, no activation."""
    fc = nn.Linear(in_dim, out_dim)
    nn.init.trunc_normal_(fc.weight, std=0.005, a=-0.01, b=0.01)
    nn.init.constant_(fc.bias, 0.1)
    return fc


def _conv_relu_drop(channels: int, kernel: int, dropout: float) -> list[nn.Module]:
    """A CVM-Net-II transformation layer: conv (same padding), ReLU, dropout."""
    return [
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    ]


class CVMNet(CrossViewModel):
    """CVM-Net-I or -II. Each view: ``ground``/``aerial`` module, then the ``shared`` module.

    I:  view = VGG16 -> NetVLAD (K=64, unshared); shared = FC 32,768 -> 4,096.
    II: view = VGG16 -> 1x1 conv; shared = 3x3 conv -> 1x1 conv -> NetVLAD -> bias-free
        projection 32,768 -> 4,096 (init N(0, 1/sqrt(K))).
    Both return the L2-normalised projection (the CVM-Net-II code leaves it unnormalised).
    """

    def __init__(self, opts: CVMNetOptions) -> None:
        super().__init__()
        weights = vgg16_weights(opts.pretrained)  # read once, copied into both trunks
        ground_trunk, channels = _trunk(opts, weights)
        aerial_trunk, _ = _trunk(opts, weights)
        self.initialisation = weights[1] if weights else FROM_SCRATCH
        if opts.version == "I":
            self.ground = nn.Sequential(ground_trunk, NetVLAD(channels, opts.clusters))
            self.aerial = nn.Sequential(aerial_trunk, NetVLAD(channels, opts.clusters))
            self.shared: nn.Module = _shared_fc(channels * opts.clusters, opts.fc_dim)
        else:
            self.ground = nn.Sequential(ground_trunk, *_conv_relu_drop(channels, 1, opts.dropout))
            self.aerial = nn.Sequential(aerial_trunk, *_conv_relu_drop(channels, 1, opts.dropout))
            projection = nn.Linear(channels * opts.clusters, opts.fc_dim, bias=False)
            nn.init.normal_(projection.weight, 0.0, 1.0 / math.sqrt(opts.clusters))
            self.shared = nn.Sequential(
                *_conv_relu_drop(channels, 3, opts.dropout),
                *_conv_relu_drop(channels, 1, opts.dropout),
                NetVLAD(channels, opts.clusters),
                projection,
            )
        self.descriptor_dim = opts.fc_dim
        # a Caffe vgg16.npy takes BGR with Caffe means; timm's (torchvision) VGG16 RGB/ImageNet
        self.preprocess = vgg_preprocess(
            opts.ground_size, opts.aerial_size, opts.polar, opts.pretrained
        )

    def embed_ground(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised ground descriptor."""
        return l2n(self.shared(self.ground(x)))

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised aerial descriptor."""
        return l2n(self.shared(self.aerial(x)))

    def branches(self) -> dict[str, nn.Module]:
        """Each view's own layers followed by the shared ones (counted in both)."""
        return {
            "ground": nn.Sequential(self.ground, self.shared),
            "aerial": nn.Sequential(self.aerial, self.shared),
        }
