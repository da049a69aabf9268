"""Reading the published SAIG weights (https://github.com/yanghongji2007/SAIG).

The official backbone is ``VisionTransformer`` in the repository's timm fork
(pytorch-image-models/timm/models/SAIG.py): ``patch_embed.conv_stem.N`` (six 3x3 convs with
BatchNorm, then a 1x1 projection), ``pos_embed`` (no class token), ``blocks.I.norm1`` and
``blocks.I.attn.{qkv,proj}``, ``norm`` and an ImageNet ``head``. The ImageNet-1k weights are
timm training checkpoints (``state_dict``); the CVUSA/CVACT/VIGOR models are saved by
train.py / train_sam.py as ``{'model': twoviewmodel.state_dict(), ...}`` with keys
``model_grd.backbone.*`` and, for SMD, ``model_grd.linear{1,2,3}.*`` (model/model.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.api import (
    flat_state_dict,
    unmapped_error,
)

VIEWS = {"model_grd": "ground", "model_sat": "aerial"}
SMD_LAYERS = {"linear1": "fc1", "linear2": "fc2", "linear3": "fc3"}
BACKBONE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (r"patch_embed\.conv_stem\.(\d+)\.(\w+)", r"stem.\1.\2"),
        (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"blocks.\1.norm.\2"),
        (r"blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),
        (r"(pos_embed|norm\.weight|norm\.bias)", r"\1"),
        # this plugin's own layout passes through
        (r"stem\.(\d+)\.(\w+)", r"stem.\1.\2"),
        (r"blocks\.(\d+)\.norm\.(weight|bias)", r"blocks.\1.norm.\2"),
    )
)


def backbone_key(key: str) -> str | None:
    """This plugin's backbone name for official key KEY (None when no rule places it)."""
    for pattern, template in BACKBONE_RULES:
        match = pattern.fullmatch(key)
        if match is not None:
            return match.expand(template)
    return None


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A (1, S*S, C) position embedding resized to GRID as the official code does it:
    bicubic ``F.interpolate`` with align_corners=False and no antialiasing."""
    side = math.isqrt(pos.shape[1])
    if side * side != pos.shape[1]:
        raise ValueError(f"position embedding of {pos.shape[1]} tokens is not a square grid")
    square = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(square.float(), size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)


def imagenet_backbone_state(
    checkpoint: Mapping[str, Any], grid: tuple[int, int], source: str
) -> dict[str, torch.Tensor]:
    """A backbone's state from the ImageNet-1k SAIG weights (classifier dropped, position
    embedding resized to GRID when its length differs)."""
    out: dict[str, torch.Tensor] = {}
    unmapped: dict[str, torch.Tensor] = {}
    for key, value in flat_state_dict(checkpoint, source).items():
        key = key.removeprefix("module.")
        if key.startswith("head."):
            continue
        name = backbone_key(key)
        if name is None:
            unmapped[key] = value
        elif name == "pos_embed" and value.shape[1] != grid[0] * grid[1]:
            out[name] = resize_pos_embed(value, grid)
        else:
            out[name] = value
    unmapped_error(source, unmapped, "SAIG ImageNet weights")
    return out


def is_official(checkpoint: Mapping[str, Any]) -> bool:
    """True for a two-view model saved by the official train.py / train_sam.py."""
    model = checkpoint.get("model")
    return isinstance(model, Mapping) and any(str(k).startswith("model_grd.") for k in model)


def official_state(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Both views' tensors of an official trained model, renamed to this plugin's keys."""
    out: dict[str, torch.Tensor] = {}
    unmapped: dict[str, torch.Tensor] = {}
    for key, value in checkpoint["model"].items():
        view, _, rest = key.removeprefix("module.").partition(".")
        part, _, inner = rest.partition(".")
        name: str | None = None
        if view in VIEWS and part == "backbone":
            inner_name = backbone_key(inner)
            name = f"backbone.{inner_name}" if inner_name else None
        elif view in VIEWS and part in SMD_LAYERS:
            name = f"head.{SMD_LAYERS[part]}.{inner}"
        if name is None:
            unmapped[key] = value
        else:
            out[f"{VIEWS[view]}.{name}"] = value
    unmapped_error(source, unmapped, "an official SAIG checkpoint")
    return out
