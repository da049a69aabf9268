"""L2LTR: self-cross attention against its formula, parameter counts, pretrained loading."""

from __future__ import annotations

import math
import os
from functools import partial

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.errors import BenchmarkError  # noqa: E402
from plugins.l2ltr import L2LTR, SPEC, L2LTROptions, SelfCrossBlock, SelfCrossEncoder  # noqa: E402
from plugins.l2ltr.model import r50_stem  # noqa: E402

TINY = dict(SPEC.variants["tiny"])


def mha(q_in: torch.Tensor, k_in: torch.Tensor, attn: torch.nn.Module, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V with Q, V from Q_IN and K from K_IN, written out."""
    b, n, c = q_in.shape
    d = c // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, n, heads, d).transpose(1, 2)

    q = split(q_in @ attn.q.weight.T + attn.q.bias)
    k = split(k_in @ attn.k.weight.T + attn.k.bias)
    v = split(q_in @ attn.v.weight.T + attn.v.bias)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, c)
    return out @ attn.proj.weight.T + attn.proj.bias


def reference(
    encoder: SelfCrossEncoder, h0: torch.Tensor, heads: int, self_cross: bool
) -> torch.Tensor:
    """METHODS.md's loop: keys from the previous block's input (h_0 for blocks 1 and 2)."""

    def ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, 1e-6)

    x, k_prev = h0, h0
    for block in encoder.blocks:
        h = x
        q_in = ln(x, block.norm1)
        k_in = ln(k_prev, block.norm_key) if self_cross else q_in
        x = x + mha(q_in, k_in, block.attn, heads)
        y = ln(x, block.norm2)
        y = F.gelu(y @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
        x = x + y @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
        k_prev = h
    return ln(x, encoder.norm)


def randomise(module: torch.nn.Module) -> None:
    """Non-trivial LayerNorm affine parameters so LN1 and LN2 are distinguishable."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("self_cross", [True, False])
def test_encoder_matches_formula(self_cross: bool) -> None:
    torch.manual_seed(0)
    enc = SelfCrossEncoder(16, depth=4, num_heads=2, mlp_dim=32, dropout=0.0, self_cross=self_cross)
    randomise(enc)
    h0 = torch.randn(2, 5, 16)
    torch.testing.assert_close(enc(h0), reference(enc, h0, 2, self_cross), atol=1e-5, rtol=1e-4)


def test_keys_come_from_previous_block_input() -> None:
    torch.manual_seed(0)
    enc = SelfCrossEncoder(16, depth=3, num_heads=2, mlp_dim=32, dropout=0.0, self_cross=True)
    randomise(enc)
    h0 = torch.randn(2, 5, 16)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    for block in enc.blocks:
        block.register_forward_hook(lambda m, args, out: seen.append((args[0], args[1])))
    enc(h0)
    (x1, k1), (x2, k2), (x3, k3) = seen
    assert torch.equal(k1, h0) and torch.equal(x1, h0)
    assert torch.equal(k2, h0) and not torch.equal(x2, h0)
    assert torch.equal(k3, x2)


def test_self_attention_switch_is_a_plain_vit_block() -> None:
    enc = SelfCrossEncoder(16, depth=2, num_heads=2, mlp_dim=32, dropout=0.0, self_cross=False)
    assert all(block.norm_key is None for block in enc.blocks)
    with_cross = SelfCrossEncoder(
        16, depth=2, num_heads=2, mlp_dim=32, dropout=0.0, self_cross=True
    )
    extra = sum(p.numel() for p in with_cross.parameters()) - sum(
        p.numel() for p in enc.parameters()
    )
    assert extra == 2 * 2 * 16  # one extra LayerNorm (weight + bias) per block


def test_full_config_parameter_count() -> None:
    with torch.device("meta"):
        model = L2LTR(L2LTROptions(pretrained=False))
    total = sum(p.numel() for p in model.parameters())
    assert abs(total / 1e6 - 195.9) / 195.9 < 0.01
    branches = model.branches()
    assert sum(p.numel() for p in branches["ground"].parameters()) == total // 2
    assert model.descriptor_dim == 768
    assert model.ground.grid == (8, 32) and model.ground.pos_embed.shape == (1, 257, 768)


def test_nonpolar_variant_grid() -> None:
    with torch.device("meta"):
        model = L2LTR(L2LTROptions(**SPEC.variants["nonpolar"], pretrained=False))
    assert model.aerial.grid == (16, 16) and not model.preprocess.polar


def test_tiny_forward_backward_and_size_check() -> None:
    torch.manual_seed(0)
    model = L2LTR(L2LTROptions(**TINY, ground_size=(32, 128), aerial_size=(32, 128)))
    g, a = torch.randn(3, 3, 32, 128), torch.randn(3, 3, 32, 128)
    out = model(g, a)
    assert out["ground"].shape == (3, model.descriptor_dim) == (3, 128)
    torch.testing.assert_close(out["aerial"].norm(dim=1), torch.ones(3))
    (out["ground"] * out["aerial"]).sum().backward()
    assert model.ground.encoder.blocks[2].norm_key.weight.grad is not None
    with pytest.raises(BenchmarkError, match="ground_size"):
        model.embed_ground(torch.randn(1, 3, 64, 64))  # same token count, other grid


def test_options_reject_inconsistent_stem() -> None:
    with pytest.raises(ValueError, match="stem_groups"):
        L2LTROptions(stem_width=30)


def test_pretrained_vit_file_initialises_both_layernorms(tmp_path) -> None:
    from safetensors.torch import save_file
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    opts = L2LTROptions(**TINY)
    vit = VisionTransformer(
        img_size=32,
        patch_size=1,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_ratio=2.0,
        num_classes=5,
        embed_layer=partial(HybridEmbed, backbone=r50_stem(opts)),
    )
    randomise(vit)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    sizes = {"ground_size": (32, 128), "aerial_size": (32, 128)}
    model = L2LTR(L2LTROptions(**{**TINY, **sizes, "pretrained": str(path)}))
    assert model.initialisation.startswith("imagenet:vit.safetensors (sha256 ")
    src = vit.state_dict()
    for branch in (model.ground, model.aerial):
        block = branch.encoder.blocks[1]
        torch.testing.assert_close(block.norm1.weight, src["blocks.1.norm1.weight"])
        torch.testing.assert_close(block.norm_key.weight, src["blocks.1.norm1.weight"])
        torch.testing.assert_close(block.norm_key.bias, src["blocks.1.norm1.bias"])
        qkv = torch.cat([block.attn.q.weight, block.attn.k.weight, block.attn.v.weight])
        torch.testing.assert_close(qkv, src["blocks.1.attn.qkv.weight"])
        torch.testing.assert_close(
            branch.backbone.stem.conv.weight, src["patch_embed.backbone.stem.conv.weight"]
        )
        assert branch.pos_embed.shape == (1, 1 + 2 * 8, 128)
        torch.testing.assert_close(branch.pos_embed[:, 0], src["pos_embed"][:, 0])
        # corner-aligned resize keeps the grid's corner entries
        torch.testing.assert_close(branch.pos_embed[:, 1], src["pos_embed"][:, 1])


def test_macs_count_the_self_cross_attention_matmuls() -> None:
    from benchmark.profiling import count_macs

    n, c, hidden = 9, 64, 128
    block = SelfCrossBlock(c, 2, hidden, dropout=0.0).eval()
    macs, uncounted = count_macs(block, (torch.randn(1, n, c), torch.randn(1, n, c)))
    linears = 4 * n * c * c + 2 * n * c * hidden  # q, k, v, proj; MLP
    attention = 2 * n * n * c  # Q K^T and weights @ V
    assert macs == linears + attention + 3 * 5 * n * c  # three LayerNorms at 5 per element
    assert not any("attention" in op["op"] for op in uncounted)
