"""Backbones shared by several methods, built from timm (never hand-written), and their
ImageNet weights: timm's (torchvision) VGG16 or the Caffe-converted ``vgg16.npy`` of the
TF1 codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Self

import torch
from pydantic import Field, model_validator
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.specs import ModelOptions, Preprocess, Size
from benchmark.weights import (
    PretrainedWeights,
    flat_state_dict,
    is_caffe_npy,
    load_into,
    pretrained_state,
)

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

VGG16_WEIGHTS = PretrainedWeights(
    name="ImageNet VGG16 weights",
    timm="vgg16.tv_in1k",
    files=(
        "a Caffe-converted vgg16.npy, a dict of layer name -> [W (HWIO), b] as the TF1 codes "
        "load it, which switches the input to BGR with Caffe mean subtraction; or a "
        "safetensors of timm's vgg16 (RGB, ImageNet mean/std)"
    ),
    url=(
        "https://huggingface.co/timm/vgg16.tv_in1k; the vgg16.npy is the ImageNet "
        "initialisation linked from https://github.com/Jeff-Zilence/VIGOR"
    ),
)


class VGGOptions(ModelOptions):
    """Options of a method on a VGG16 trunk: ImageNet weights on the full trunk, a tiny
    trunk (for CPU runs) always from scratch."""

    backbone: Literal["vgg16", "tiny"] = Field("vgg16", description="tiny = narrow VGG+BN")

    @model_validator(mode="after")
    def _tiny_from_scratch(self) -> Self:
        if self.backbone == "tiny" and self.pretrained:
            raise ValueError(
                "the tiny backbone has no pretrained weights; set model.pretrained=false"
            )
        return self

    def pretrained_weights(self) -> PretrainedWeights | None:
        """ImageNet VGG16 for the vgg16 backbone."""
        return VGG16_WEIGHTS if self.backbone == "vgg16" else None


def conv_names(cfg: Sequence[int | str]) -> list[str]:
    """Caffe names of the convolutions of a VGG config: conv1_1, conv1_2, conv2_1, ..."""
    names, stage, index = [], 1, 0
    for item in cfg:
        if item == "M":
            stage, index = stage + 1, 0
        else:
            index += 1
            names.append(f"conv{stage}_{index}")
    return names


def vgg16_weights(option: bool | str) -> tuple[dict[str, torch.Tensor], str] | None:
    """ImageNet VGG16 convolutions as {'conv1_1.weight': OIHW, 'conv1_1.bias': ..., ...} and
    their source, for ``vgg_trunk``; None when the option asks for none (or a checkpoint
    replaces them). OPTION: True (timm's hub), a Caffe ``.npy`` or a timm-layout file."""
    loaded = pretrained_state(option, VGG16_WEIGHTS)
    if loaded is None:
        return None
    state, source = loaded
    names = conv_names(VGG16_CFG)
    out: dict[str, torch.Tensor] = {}
    if is_caffe_npy(option):
        missing = [n for n in names if state.get(f"{n}/weights", torch.empty(0)).ndim != 4]
        if missing:
            raise BenchmarkError(
                f"{source} has no 4-d convolution weights for {', '.join(missing)}; "
                "expected a VGG16 .npy (conv1_1 .. conv5_3)."
            )
        for name in names:
            out[f"{name}.weight"] = state[f"{name}/weights"].permute(3, 2, 0, 1).contiguous()
            out[f"{name}.bias"] = state[f"{name}/biases"]
        return out, source
    state = {k.removeprefix("features."): v for k, v in flat_state_dict(state, source).items()}
    convs = [i for i, item in enumerate(_layer_kinds(VGG16_CFG)) if item == "conv"]
    for name, index in zip(names, convs, strict=True):
        for part in ("weight", "bias"):
            if f"{index}.{part}" not in state:
                raise BenchmarkError(
                    f"{source} has no tensor features.{index}.{part}; expected timm's vgg16 layout."
                )
            out[f"{name}.{part}"] = state[f"{index}.{part}"]
    return out, source


def _layer_kinds(cfg: Sequence[int | str], batch_norm: bool = False) -> list[str]:
    """The module kinds of a timm VGG ``features`` for CFG, in order."""
    kinds: list[str] = []
    for item in cfg:
        kinds += ["pool"] if item == "M" else ["conv", *(["bn"] if batch_norm else []), "relu"]
    return kinds


def vgg_preprocess(ground: Size, aerial: Size, polar: bool, option: bool | str) -> Preprocess:
    """The input a VGG trunk expects: BGR with Caffe means for a Caffe ``.npy``, else RGB with
    ImageNet mean/std (timm's torchvision weights, and training from scratch)."""
    if is_caffe_npy(option):
        return Preprocess.caffe(ground, aerial, polar)
    return Preprocess(ground, aerial, polar)


def vgg_trunk(
    cfg: Sequence[int | str] = VGG16_CFG,
    *,
    weights: tuple[Mapping[str, torch.Tensor], str] | None = None,
    batch_norm: bool = False,
    dropout: float = 0.0,
    dropout_from: int = 4,
    freeze_until: int = 0,
) -> nn.Sequential:
    """The convolutional part of a timm VGG (no pool5, no classifier), TF-style ceil pooling.

    DROPOUT is applied after every ReLU of conv stage >= DROPOUT_FROM (SAFA/CVM-Net use
    p = 0.2 on conv4_x and conv5_x); stages < FREEZE_UNTIL are frozen (CVM-Net: 4). WEIGHTS
    (``vgg16_weights``: tensors keyed by Caffe layer name, and their source) initialise the
    convolutions.
    """
    from timm.models.vgg import VGG

    if weights is not None and batch_norm:
        raise BenchmarkError("Pretrained VGG weights are for the plain VGG16, not VGG+BN.")
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
    if weights is not None:
        named, source = weights
        convs = [i for i, kind in enumerate(_layer_kinds(cfg)) if kind == "conv"]
        state = {
            f"{index}.{part}": named[f"{name}.{part}"]
            for name, index in zip(conv_names(cfg), convs, strict=True)
            for part in ("weight", "bias")
            if f"{name}.{part}" in named
        }
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
