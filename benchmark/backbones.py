"""Backbones shared by several methods, built from timm (never hand-written)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from benchmark.weights import load_into, read_state_dict, timm_pretrained

VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
)  # conv1_1 .. conv5_3, pool5 dropped


def vgg_trunk(
    cfg: Sequence[int | str] = VGG16_CFG,
    *,
    pretrained: bool | str = False,
    batch_norm: bool = False,
    dropout: float = 0.0,
    dropout_from: int = 4,
    freeze_until: int = 0,
) -> nn.Sequential:
    """The convolutional part of a timm VGG (no pool5, no classifier), TF-style ceil pooling.

    DROPOUT is applied after every ReLU of conv stage >= DROPOUT_FROM (SAFA/CVM-Net use
    p = 0.2 on conv4_x and conv5_x); stages < FREEZE_UNTIL are frozen (CVM-Net: 4).
    PRETRAINED loads timm's ``vgg16`` ImageNet weights (True) or a local file (path).
    """
    from timm.models.vgg import VGG

    norm = nn.BatchNorm2d if batch_norm else None
    # The classifier head of timm's VGG is large; build on the meta device, keep the trunk.
    full_cfg = [*cfg, "M"]
    target = torch.empty(0).device  # the caller's default device (meta when only counting)
    with torch.device("meta"):
        net = VGG(full_cfg, num_classes=0, norm_layer=norm)
    features = net.features[:-1]
    if target.type != "meta":
        features = features.to_empty(device=target)
    for m in features.modules() if target.type != "meta" else ():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
            m.reset_running_stats()
    if pretrained:
        if pretrained is True:
            name = "vgg16_bn" if batch_norm else "vgg16"
            state = {
                k.removeprefix("features."): v
                for k, v in timm_pretrained(name).state_dict().items()
                if k.startswith("features.") and int(k.split(".")[1]) < len(features)
            }
            source = f"timm:{name}"
        else:
            state = read_state_dict(pretrained)
            state = {k.removeprefix("features."): v for k, v in state.items()}
            state = {k: v for k, v in state.items() if int(k.split(".")[0]) < len(features)}
            source = str(pretrained)
        load_into(features, state, source)
    layers: list[nn.Module] = []
    stage = 1
    for m in features:
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True
            stage += 1
        layers.append(m)
        if stage < freeze_until:
            for p in m.parameters():
                p.requires_grad_(False)
        if isinstance(m, nn.ReLU) and dropout > 0 and stage >= dropout_from:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
