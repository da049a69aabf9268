"""Initialising an L2LTR branch from standard R50+ViT-B/16 weights (timm's key layout)."""

from __future__ import annotations

import re

import torch
from timm.layers import resample_abs_pos_embed

from benchmark.api import read_state_dict, timm_pretrained

HUB_MODEL = "vit_base_r50_s16_224.orig_in21k"  # Google's ImageNet-21k R50+ViT-B_16, 14x14 grid
CLASSIFIER = ("head.", "fc_norm.", "pre_logits.")
BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def vit_state_dict(pretrained: bool | str) -> tuple[dict[str, torch.Tensor], str]:
    """The hybrid ViT's weights: timm's ImageNet-21k checkpoint (True) or a local file."""
    if pretrained is True:
        return timm_pretrained(HUB_MODEL).state_dict(), f"timm:{HUB_MODEL}"
    return read_state_dict(str(pretrained)), str(pretrained)


def branch_state(
    vit: dict[str, torch.Tensor], grid: tuple[int, int], self_cross: bool
) -> dict[str, torch.Tensor]:
    """Map a timm hybrid ViT state dict onto an L2LTR branch of token GRID.

    The fused qkv projection is split into q, k and v; the key LayerNorm (LN2) is a copy of
    the block's pre-attention LayerNorm (as the paper initialises it); the position
    embedding is resized from the checkpoint's square grid by first-order (bilinear,
    corner-aligned) interpolation, keeping the CLS entry; the classifier is dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in vit.items():
        if key.startswith(CLASSIFIER):
            continue
        key = key.removeprefix("patch_embed.")
        block = BLOCK_KEY.fullmatch(key)
        if key == "pos_embed":
            value = resample_abs_pos_embed(
                value,
                list(grid),
                num_prefix_tokens=1,
                interpolation="bilinear",
                antialias=False,
                align_corners=True,
            )
        elif block and block.group(2).startswith("attn.qkv."):
            suffix = block.group(2).rsplit(".", 1)[1]
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"encoder.blocks.{block.group(1)}.attn.{name}.{suffix}"] = part.clone()
            continue
        elif block and block.group(2).startswith("norm1.") and self_cross:
            out[f"encoder.blocks.{block.group(1)}.norm_key.{block.group(2)[6:]}"] = value.clone()
        if block or key.startswith("norm."):
            key = "encoder." + key
        out[key] = value
    return out
