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
    from benchmark.profiling.counting import count_macs

    n, c = 16, 96
    macs, uncounted = count_macs(AttentionBlock(c, 3).eval(), (torch.randn(1, n, c),))
    layer_norm = 5 * n * c  # fvcore's LayerNorm cost
    assert macs == n * c * 3 * c + 2 * n * n * c + n * c * c + layer_norm
    assert not any("attention" in op["op"] for op in uncounted)


# Published SAIG weights at a small size. Names and shapes follow the official code
# (https://github.com/yanghongji2007/SAIG): the backbone of pytorch-image-models/timm/models/
# SAIG.py (ConvEmbed's conv_stem Sequential, pos_embed without class token, attention-only
# blocks, head) and model/model.py's two-view wrapper (SMD = linear1..3).
SMALL = {**SPEC.variants["tiny"], "ground_size": (32, 128), "aerial_size": (64, 64)}


def official_backbone(tokens: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One SAIG backbone's state dict in the official layout, random values."""
    channels, dim = (3, *SMALL["stem_channels"]), SMALL["embed_dim"]
    out: dict[str, torch.Tensor] = {}
    for k in range(6):
        conv, bn = f"patch_embed.conv_stem.{3 * k}.", f"patch_embed.conv_stem.{3 * k + 1}."
        fan_in = 9 * channels[k]  # unit-variance activations, so every bias matters
        shape = (channels[k + 1], channels[k], 3, 3)
        out[conv + "weight"] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        out[conv + "bias"] = torch.randn(channels[k + 1], generator=generator)
        for name in ("weight", "bias", "running_mean"):
            out[bn + name] = torch.randn(channels[k + 1], generator=generator)
        out[bn + "running_var"] = torch.rand(channels[k + 1], generator=generator) + 0.5
        out[bn + "num_batches_tracked"] = torch.tensor(1000)
    out["patch_embed.conv_stem.18.weight"] = torch.randn(
        dim, channels[6], 1, 1, generator=generator
    ) / math.sqrt(channels[6])
    out["patch_embed.conv_stem.18.bias"] = torch.randn(dim, generator=generator)
    out["pos_embed"] = torch.randn(1, tokens, dim, generator=generator)
    for i in range(SMALL["depth"]):
        out[f"blocks.{i}.norm1.weight"] = torch.randn(dim, generator=generator)
        out[f"blocks.{i}.norm1.bias"] = torch.randn(dim, generator=generator)
        out[f"blocks.{i}.attn.qkv.weight"] = torch.randn(3 * dim, dim, generator=generator) / 10
        out[f"blocks.{i}.attn.qkv.bias"] = torch.randn(3 * dim, generator=generator)
        out[f"blocks.{i}.attn.proj.weight"] = torch.randn(dim, dim, generator=generator) / 10
        out[f"blocks.{i}.attn.proj.bias"] = torch.randn(dim, generator=generator)
    out["norm.weight"] = torch.randn(dim, generator=generator)
    out["norm.bias"] = torch.randn(dim, generator=generator)
    return out


def official_model(tokens: int = 16) -> dict:
    """train.py's checkpoint of a two-view SAIG + SMD model."""
    generator = torch.Generator().manual_seed(0)
    model: dict[str, torch.Tensor] = {}
    for view in ("model_grd", "model_sat"):
        for key, value in official_backbone(tokens, generator).items():
            model[f"{view}.backbone.{key}"] = value
        for name, shape in (("linear1", (4 * tokens, tokens)), ("linear2", (tokens, 4 * tokens))):
            model[f"{view}.{name}.weight"] = torch.randn(shape, generator=generator) / 4
            model[f"{view}.{name}.bias"] = torch.randn(shape[0], generator=generator)
        model[f"{view}.linear3.weight"] = torch.randn(8, tokens, generator=generator)
        model[f"{view}.linear3.bias"] = torch.randn(8, generator=generator)
    return {
        "model": model,
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 9,
        "best_acc": 0.9,
    }


def test_official_trained_model_places_every_tensor(tmp_path) -> None:
    from benchmark.weights import load_weights

    checkpoint = official_model()
    torch.save(checkpoint, tmp_path / "model_checkpoint.pth")
    model = SAIG(SAIGOptions(**SMALL))
    assert load_weights(model, tmp_path / "model_checkpoint.pth").startswith("weights:")
    m = checkpoint["model"]
    pairs = [
        (
            model.ground.backbone.stem[0].weight,
            m["model_grd.backbone.patch_embed.conv_stem.0.weight"],
        ),
        (
            model.ground.backbone.stem[4].running_var,
            m["model_grd.backbone.patch_embed.conv_stem.4.running_var"],
        ),
        (
            model.aerial.backbone.stem[18].bias,
            m["model_sat.backbone.patch_embed.conv_stem.18.bias"],
        ),
        (model.aerial.backbone.pos_embed, m["model_sat.backbone.pos_embed"]),
        (
            model.ground.backbone.blocks[2].norm.weight,
            m["model_grd.backbone.blocks.2.norm1.weight"],
        ),
        (
            model.ground.backbone.blocks[3].attn.qkv.weight,
            m["model_grd.backbone.blocks.3.attn.qkv.weight"],
        ),
        (
            model.aerial.backbone.blocks[0].attn.proj.bias,
            m["model_sat.backbone.blocks.0.attn.proj.bias"],
        ),
        (model.aerial.backbone.norm.bias, m["model_sat.backbone.norm.bias"]),
        (model.ground.head.fc1.weight, m["model_grd.linear1.weight"]),
        (model.ground.head.fc2.bias, m["model_grd.linear2.bias"]),
        (model.aerial.head.fc3.weight, m["model_sat.linear3.weight"]),
    ]
    for ours, official in pairs:
        assert torch.equal(ours, official)
    own = model.state_dict()
    assert len(own) == len(m)
    for key, value in m.items():  # a bijection: each official tensor equals one model tensor
        matches = [k for k, t in own.items() if t.shape == value.shape and torch.equal(t, value)]
        assert len(matches) == 1 or key.endswith("num_batches_tracked"), key


def test_each_official_tensor_changes_the_descriptors() -> None:
    checkpoint = official_model()
    model = SAIG(SAIGOptions(**SMALL)).eval()
    images = {"model_grd": torch.randn(2, 3, 32, 128), "model_sat": torch.randn(2, 3, 64, 64)}
    embed = {"model_grd": model.embed_ground, "model_sat": model.embed_aerial}

    def descriptor(ckpt: dict, view: str) -> torch.Tensor:
        model.load_state_dict(model.adapt_checkpoint(ckpt, "official"))
        with torch.no_grad():
            return embed[view](images[view])

    base = {view: descriptor(checkpoint, view) for view in embed}
    for key, value in checkpoint["model"].items():
        if key.endswith("num_batches_tracked"):  # a step counter: no effect in evaluation
            continue
        view = key.split(".")[0]
        changed = {"model": {**checkpoint["model"], key: value + torch.rand_like(value) + 0.1}}
        # an unchanged model gives bitwise equal descriptors; a used tensor moves them
        assert (descriptor(changed, view) - base[view]).abs().max() > 1e-6, key


def test_official_model_with_a_stray_tensor_is_refused(tmp_path) -> None:
    from benchmark.weights import load_weights

    checkpoint = official_model()
    checkpoint["model"]["model_grd.backbone.blocks.0.mlp.fc1.weight"] = torch.zeros(4, 2)
    torch.save(checkpoint, tmp_path / "model_checkpoint.pth")
    with pytest.raises(BenchmarkError, match=r"blocks\.0\.mlp\.fc1\.weight \(4, 2\)"):
        load_weights(SAIG(SAIGOptions(**SMALL)), tmp_path / "model_checkpoint.pth")
    torch.save(official_model(), tmp_path / "smd.pth")  # an SMD model is not a GAP one
    with pytest.raises(
        BenchmarkError, match=r"12 unexpected keys: aerial\.head\.fc1\.bias \(64,\)"
    ):
        load_weights(SAIG(SAIGOptions(**SMALL, head="gap")), tmp_path / "smd.pth")


def test_imagenet_weights_load_as_published(tmp_path) -> None:
    import argparse

    from timm.layers import resample_abs_pos_embed

    generator = torch.Generator().manual_seed(1)
    state = official_backbone(14 * 14, generator)  # trained at 224x224
    state["head.weight"], state["head.bias"] = torch.randn(1000, 96), torch.randn(1000)
    torch.save(
        {
            "epoch": 299,
            "arch": "SAIG_Deep",
            "state_dict": state,
            "optimizer": {"state": {}, "param_groups": []},
            "version": 2,
            "args": argparse.Namespace(model="SAIG_Deep", lr=5e-4),  # timm's CheckpointSaver
            "metric": 80.3,
        },
        tmp_path / "SAIG_D.pth.tar",
    )
    model = SAIG(SAIGOptions(**{**SMALL, "pretrained": str(tmp_path / "SAIG_D.pth.tar")}))
    assert model.initialisation.startswith("imagenet:SAIG_D.pth.tar (sha256 ")
    for branch in (model.ground, model.aerial):
        torch.testing.assert_close(
            branch.backbone.stem[3].weight, state["patch_embed.conv_stem.3.weight"]
        )
        torch.testing.assert_close(
            branch.backbone.blocks[1].norm.bias, state["blocks.1.norm1.bias"]
        )
    # train.py resizes the 14x14 grid with bicubic F.interpolate, no antialiasing
    grid = model.ground.backbone.grid
    plain = resample_abs_pos_embed(
        state["pos_embed"], list(grid), (14, 14), num_prefix_tokens=0, antialias=False
    )
    torch.testing.assert_close(model.ground.backbone.pos_embed, plain)
    antialiased = resample_abs_pos_embed(state["pos_embed"], list(grid), num_prefix_tokens=0)
    assert (model.ground.backbone.pos_embed - antialiased).abs().max() > 1e-2


def test_evaluating_an_official_model_needs_no_imagenet_weights(tmp_path, tiny_run: dict) -> None:
    from benchmark.config import resolve
    from benchmark.jobs import plan, preflight
    from benchmark.registry import build_registry
    from benchmark.runner import run_job

    torch.save(official_model(), tmp_path / "model_checkpoint.pth")
    reg = build_registry()
    sizes = {k: v for k, v in SMALL.items() if k != "pretrained"}  # paper: ImageNet SAIG-D
    cfg = resolve(reg.model("saig"), {**tiny_run, "epochs": 0, "model": sizes}, quick=False)
    with pytest.raises(BenchmarkError, match="SAIG"):
        preflight(reg, [plan(reg, cfg)])  # training would need the ImageNet file
    preflight(reg, [plan(reg, cfg, tmp_path / "model_checkpoint.pth")])  # it replaces them
    result = run_job(reg, cfg, weights=tmp_path / "model_checkpoint.pth")
    assert result.status == "ok", result.error
    assert result.initialisation.startswith("weights:model_checkpoint.pth (sha256 ")
