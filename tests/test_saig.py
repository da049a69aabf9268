"""SAIG: attention-only blocks, SMD layout, parameter counts, and its two loss plugins."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.errors import BenchmarkError  # noqa: E402
from benchmark.losses import pair_distances  # noqa: E402
from plugins.l2ltr import L2LTR, L2LTROptions  # noqa: E402
from plugins.saig import SAIG, SMD, SPEC, AttentionBlock, SAIGOptions, info_nce, semi_triplet  # noqa: E402
from plugins.saig.losses import LOSSES  # noqa: E402

QUICK = dict(SPEC.quick["model"])


def params_m(model: torch.nn.Module) -> float:
    """Parameters in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def tiny(**over: object) -> SAIG:
    """The tiny SAIG at the quick protocol's input sizes."""
    return SAIG(SAIGOptions(**{**SPEC.variants["tiny"], **QUICK, **over}))


def test_smd_shape_and_index_order() -> None:
    torch.manual_seed(0)
    smd = SMD(tokens=6, outputs=3)
    x = torch.randn(2, 6, 5)  # (B, N, C)
    out = smd(x)
    assert out.shape == (2, 3 * 5)
    for c in range(5):
        column = x[:, :, c]  # one channel's N token values
        mixed = smd.fc3(smd.fc2(F.gelu(smd.fc1(column))))  # (B, K)
        for k in range(3):
            torch.testing.assert_close(out[:, k * 5 + c], mixed[:, k])


def test_smd_is_sized_by_the_configured_input() -> None:
    with torch.device("meta"):
        model = SAIG(SAIGOptions(ground_size=(320, 640), aerial_size=(320, 320), pretrained=False))
    assert model.ground.head.fc1.in_features == 800 and model.aerial.head.fc1.in_features == 400
    assert model.ground.head.fc1.out_features == 3200


def test_blocks_are_attention_only() -> None:
    from timm.layers import Attention, Mlp

    model = tiny()
    blocks = list(model.ground.backbone.blocks)
    assert len(blocks) == SPEC.variants["tiny"]["depth"]
    for block in blocks:
        assert isinstance(block, AttentionBlock)
        assert set(dict(block.named_children())) == {"norm", "attn"}
        assert isinstance(block.attn, Attention)
        assert block.attn.num_heads == 3 and block.attn.head_dim == 32
        assert not any(isinstance(m, Mlp) for m in block.modules())
        linears = [n for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)]
        assert linears == ["attn.qkv", "attn.proj"]


def test_paper_block_geometry() -> None:
    with torch.device("meta"):
        model = SAIG(SAIGOptions(pretrained=False))
    block = model.aerial.backbone.blocks[0]
    assert block.attn.num_heads == 12 and block.attn.head_dim == 32
    assert block.attn.qkv.weight.shape == (1152, 384)
    assert model.aerial.backbone.grid == (16, 16) and model.ground.backbone.grid == (8, 32)
    assert not model.preprocess.polar and model.preprocess.aerial_size == (256, 256)


def test_parameter_counts_and_abstract_claim() -> None:
    with torch.device("meta"):
        deep_smd = SAIG(SAIGOptions(pretrained=False))
        shallow_smd = SAIG(SAIGOptions(**SPEC.variants["shallow"], pretrained=False))
        deep_gap = SAIG(SAIGOptions(**SPEC.variants["gap"], pretrained=False))
        l2ltr = L2LTR(L2LTROptions(pretrained=False))
    assert abs(params_m(deep_smd) - 32.3) / 32.3 < 0.01
    assert abs(params_m(shallow_smd) - 19.3) / 19.3 < 0.01
    assert abs(params_m(deep_smd.ground.backbone) - 15.61) < 0.01
    assert abs(params_m(deep_smd.ground.head) - 0.528) < 0.001
    assert deep_smd.descriptor_dim == 3072
    # "15.9% of the model parameters and half of the output dimension" (SAIG-D + GAP vs L2LTR)
    assert round(100 * params_m(deep_gap) / params_m(l2ltr), 1) == 15.9
    assert 2 * deep_gap.descriptor_dim == l2ltr.descriptor_dim


def test_tiny_forward_and_size_check() -> None:
    torch.manual_seed(0)
    model = tiny()
    out = model(torch.randn(2, 3, *QUICK["ground_size"]), torch.randn(2, 3, *QUICK["aerial_size"]))
    assert out["ground"].shape == out["aerial"].shape == (2, 8 * 96) == (2, model.descriptor_dim)
    torch.testing.assert_close(out["ground"].norm(dim=1), torch.ones(2))
    gap = tiny(head="gap")
    assert gap.embed_aerial(torch.randn(2, 3, *QUICK["aerial_size"])).shape == (2, 96)
    with pytest.raises(BenchmarkError, match="aerial_size"):
        model.embed_aerial(torch.randn(1, 3, 32, 128))  # same token count, other grid


def test_pretrained_backbone_file(tmp_path) -> None:
    from safetensors.torch import save_file

    source = tiny(ground_size=(128, 128), aerial_size=(128, 128))  # 8x8 position grid
    state = {f"{k}": v.clone() for k, v in source.ground.backbone.state_dict().items()}
    state["head.weight"] = torch.zeros(10, 96)  # an ImageNet classifier is ignored
    path = tmp_path / "saig.safetensors"
    save_file(state, str(path))
    model = tiny(pretrained=str(path))
    torch.testing.assert_close(
        model.aerial.backbone.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"]
    )
    assert model.ground.backbone.pos_embed.shape == (1, 2 * 8, 96)
    assert model.initialisation.startswith("imagenet:saig.safetensors (sha256 ")
    with pytest.raises(BenchmarkError, match="timm's hub does not hold"):
        tiny(pretrained=True)


def test_info_nce_hand_computed() -> None:
    ground = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    aerial = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    t = 0.5
    # S = aerial @ ground^T = [[1, 0], [0.6, 0.8]]; row i: S[i, :] then S^T[i, j != i]
    row0 = [1.0, 0.0, 0.6]  # target index 0
    row1 = [0.6, 0.8, 0.0]  # target index 1
    expected = (
        -math.log(math.exp(row0[0] / t) / sum(math.exp(v / t) for v in row0))
        - math.log(math.exp(row1[1] / t) / sum(math.exp(v / t) for v in row1))
    ) / 2
    assert info_nce(ground, aerial, t).item() == pytest.approx(expected, rel=1e-6)


def test_semi_triplet_hand_computed() -> None:
    # four unit vectors 90 degrees apart, ground = aerial: D_pos = 0, negatives {2, 2, 4}
    ground = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    closest_two = math.log1p(math.exp(-2.0))  # k = floor(sqrt(4)) = 2 negatives at distance 2
    assert semi_triplet(ground, ground.clone(), alpha=1.0).item() == pytest.approx(
        closest_two, rel=1e-6
    )


def test_semi_triplet_directions() -> None:
    torch.manual_seed(0)
    g = F.normalize(torch.randn(5, 3), dim=1)
    a = F.normalize(torch.randn(5, 3), dim=1)
    d = pair_distances(g, a).tolist()  # d[i][j]: aerial i, ground j
    k, alpha = 2, 10.0

    def soft(x: float) -> float:
        return math.log1p(math.exp(alpha * x))

    g2s = [
        soft(d[j][j] - n) for j in range(5) for n in sorted(d[i][j] for i in range(5) if i != j)[:k]
    ]
    s2g = [
        soft(d[i][i] - n) for i in range(5) for n in sorted(d[i][j] for j in range(5) if j != i)[:k]
    ]
    expected = (sum(g2s) / len(g2s) + sum(s2g) / len(s2g)) / 2
    assert semi_triplet(g, a, alpha).item() == pytest.approx(expected, rel=1e-5)


def test_losses_are_plugins() -> None:
    specs = {spec.name: spec for spec in LOSSES}
    outputs = {
        "ground": F.normalize(torch.randn(4, 8), dim=1),
        "aerial": F.normalize(torch.randn(4, 8), dim=1),
    }
    nce = specs["infonce"].build()
    assert nce.temperature == 0.02
    assert nce(outputs, {}).item() == pytest.approx(
        info_nce(outputs["ground"], outputs["aerial"], 0.02).item()
    )
    assert specs["semi-triplet"].build(alpha=10.0)(outputs, {}).item() > 0
    with pytest.raises(BenchmarkError, match="batch_size"):
        nce({"ground": outputs["ground"][:1], "aerial": outputs["aerial"][:1]}, {})


def test_macs_count_the_attention_matmuls() -> None:
    from benchmark.profiling import count_macs

    n, c = 16, 96
    macs, uncounted = count_macs(AttentionBlock(c, 3).eval(), (torch.randn(1, n, c),))
    layer_norm = 5 * n * c  # fvcore's LayerNorm cost
    assert macs == n * c * 3 * c + 2 * n * n * c + n * c * c + layer_norm
    assert not any("attention" in op["op"] for op in uncounted)
