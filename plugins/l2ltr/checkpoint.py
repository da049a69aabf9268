"""Reading the published L2LTR checkpoints.

The official code (https://github.com/yanghongji2007/cross_view_localization_L2LTR) saves
``{'model_grd': state_dict, 'model_sat': state_dict, 'optimizer': ...}`` in train.py, one
``VisionTransformer`` per view (models/model_crossattn.py, models/modeling_resnet.py).
Every tensor is placed in this plugin's layout or named in an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import (
    unmapped_error,
)

VIEWS = {"model_grd": "ground", "model_sat": "aerial"}
EMBED = "transformer.embeddings."
RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (rf"{EMBED}cls_token", "cls_token"),
        (rf"{EMBED}position_embeddings", "pos_embed"),
        (rf"{EMBED}patch_embeddings\.(weight|bias)", r"proj.\1"),
        (rf"{EMBED}hybrid_model\.root\.conv\.weight", "backbone.stem.conv.weight"),
        (rf"{EMBED}hybrid_model\.root\.gn\.(weight|bias)", r"backbone.stem.norm.\1"),
        (
            rf"{EMBED}hybrid_model\.body\.block(\d+)\.unit(\d+)\.conv([123])\.weight",
            r"backbone.stages.{\1}.blocks.{\2}.conv\3.weight",
        ),
        (
            rf"{EMBED}hybrid_model\.body\.block(\d+)\.unit(\d+)\.gn([123])\.(weight|bias)",
            r"backbone.stages.{\1}.blocks.{\2}.norm\3.\4",
        ),
        (
            rf"{EMBED}hybrid_model\.body\.block(\d+)\.unit(\d+)\.downsample\.weight",
            r"backbone.stages.{\1}.blocks.{\2}.downsample.conv.weight",
        ),
        (
            rf"{EMBED}hybrid_model\.body\.block(\d+)\.unit(\d+)\.gn_proj\.(weight|bias)",
            r"backbone.stages.{\1}.blocks.{\2}.downsample.norm.\3",
        ),
        (r"transformer\.encoder\.encoder_norm\.(weight|bias)", r"encoder.norm.\1"),
        (
            r"transformer\.encoder\.layer\.(\d+)\.attention_norm_1\.(weight|bias)",
            r"encoder.blocks.\1.norm1.\2",
        ),
        (
            r"transformer\.encoder\.layer\.(\d+)\.attention_norm_2\.(weight|bias)",
            r"encoder.blocks.\1.norm_key.\2",
        ),
        (
            r"transformer\.encoder\.layer\.(\d+)\.ffn_norm\.(weight|bias)",
            r"encoder.blocks.\1.norm2.\2",
        ),
        (
            r"transformer\.encoder\.layer\.(\d+)\.ffn\.(fc[12])\.(weight|bias)",
            r"encoder.blocks.\1.mlp.\2.\3",
        ),
        (
            r"transformer\.encoder\.layer\.(\d+)\.attn\.(query|key|value|out)\.(weight|bias)",
            r"encoder.blocks.\1.attn.\2.\3",
        ),
    )
)
ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "proj"}


def _target(key: str) -> str | None:
    """This plugin's name for official branch key KEY (None when no rule places it)."""
    for pattern, template in RULES:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        name = match.expand(template)
        # block/unit numbers are 1-based in the official ResNet, 0-based in timm's
        name = re.sub(r"\{(\d+)\}", lambda m: str(int(m.group(1)) - 1), name)
        return re.sub(r"\.(query|key|value|out)\.", lambda m: f".{ATTENTION[m.group(1)]}.", name)
    return None


def is_official(checkpoint: Mapping[str, Any]) -> bool:
    """True for a checkpoint saved by the official train.py."""
    return all(isinstance(checkpoint.get(view), Mapping) for view in VIEWS)


def official_state(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Both views' tensors of an official checkpoint, renamed to this plugin's keys."""
    out: dict[str, torch.Tensor] = {}
    unmapped: dict[str, torch.Tensor] = {}
    for view, branch in VIEWS.items():
        for key, value in checkpoint[view].items():
            name = _target(key.removeprefix("module."))
            if name is None:
                unmapped[f"{view}.{key}"] = value
            else:
                out[f"{branch}.{name}"] = value
    unmapped_error(source, unmapped, "an official L2LTR checkpoint")
    return out
