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
    """The official encoder's loop: keys from the previous block's input (h_0 for blocks 1
    and 2)."""

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
    narrow = {**TINY, "stem_norm": "group"}  # the pretrained layout: BiT's GroupNorm stem
    opts = L2LTROptions(**narrow)
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
    model = L2LTR(L2LTROptions(**{**narrow, **sizes, "pretrained": str(path)}))
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
    from benchmark.profiling.counting import count_macs

    n, c, hidden = 9, 64, 128
    block = SelfCrossBlock(c, 2, hidden, dropout=0.0).eval()
    macs, uncounted = count_macs(block, (torch.randn(1, n, c), torch.randn(1, n, c)))
    linears = 4 * n * c * c + 2 * n * c * hidden  # q, k, v, proj; MLP
    attention = 2 * n * n * c  # Q K^T and weights @ V
    assert macs == linears + attention + 3 * 5 * n * c  # three LayerNorms at 5 per element
    assert not any("attention" in op["op"] for op in uncounted)


# The official checkpoint (train.py: {'model_grd', 'model_sat', 'optimizer'}) at a small size.
# Key names and shapes follow models/modeling_resnet.py and models/model_crossattn.py of
# https://github.com/yanghongji2007/cross_view_localization_L2LTR; widths scale with WIDTH.
OFFICIAL = {
    "stem_layers": (1, 2, 1),
    "stem_width": 16,
    "stem_channels": (64, 128, 256),  # width * (4, 8, 16), bottlenecks width * (1, 2, 4)
    "stem_groups": 8,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "ground_size": (32, 64),
    "aerial_size": (32, 64),
    "pretrained": False,
}


def official_branch(opts: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One view's VisionTransformer state dict in the official layout, random values."""
    shapes: dict[str, tuple[int, ...]] = {}
    embed, width, dim = "transformer.embeddings.", opts["stem_width"], opts["embed_dim"]
    tokens = (opts["ground_size"][0] // 16) * (opts["ground_size"][1] // 16)
    shapes[embed + "cls_token"] = (1, 1, dim)
    shapes[embed + "position_embeddings"] = (1, tokens + 1, dim)
    shapes[embed + "hybrid_model.root.conv.weight"] = (width, 3, 7, 7)
    shapes[embed + "hybrid_model.root.gn.weight"] = (width,)
    shapes[embed + "hybrid_model.root.gn.bias"] = (width,)
    cin = width
    for block, (units, factor) in enumerate(
        zip(opts["stem_layers"], (1, 2, 4), strict=True), start=1
    ):
        cout, cmid = width * 4 * factor, width * factor
        for unit in range(1, units + 1):
            p = f"{embed}hybrid_model.body.block{block}.unit{unit}."
            shapes[p + "conv1.weight"] = (cmid, cin, 1, 1)
            shapes[p + "conv2.weight"] = (cmid, cmid, 3, 3)
            shapes[p + "conv3.weight"] = (cout, cmid, 1, 1)
            for gn, c in (("gn1", cmid), ("gn2", cmid), ("gn3", cout)):
                shapes[p + gn + ".weight"] = shapes[p + gn + ".bias"] = (c,)
            if unit == 1:
                shapes[p + "downsample.weight"] = (cout, cin, 1, 1)
                shapes[p + "gn_proj.weight"] = shapes[p + "gn_proj.bias"] = (cout,)
            cin = cout
    shapes[embed + "patch_embeddings.weight"] = (dim, width * 16, 1, 1)
    shapes[embed + "patch_embeddings.bias"] = (dim,)
    for i in range(opts["depth"]):
        p = f"transformer.encoder.layer.{i}."
        for norm in ("attention_norm_1", "attention_norm_2", "ffn_norm"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (dim,)
        shapes[p + "ffn.fc1.weight"], shapes[p + "ffn.fc1.bias"] = (
            (opts["mlp_dim"], dim),
            (opts["mlp_dim"],),
        )
        shapes[p + "ffn.fc2.weight"], shapes[p + "ffn.fc2.bias"] = (dim, opts["mlp_dim"]), (dim,)
        for name in ("query", "key", "value", "out"):
            shapes[p + f"attn.{name}.weight"], shapes[p + f"attn.{name}.bias"] = (dim, dim), (dim,)
    shapes["transformer.encoder.encoder_norm.weight"] = (dim,)
    shapes["transformer.encoder.encoder_norm.bias"] = (dim,)
    return {k: torch.randn(s, generator=generator) for k, s in shapes.items()}


def official_checkpoint() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "model_grd": official_branch(OFFICIAL, generator),
        "model_sat": official_branch(OFFICIAL, generator),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    }


def test_official_checkpoint_places_every_tensor(tmp_path) -> None:
    from benchmark.weights import load_weights

    checkpoint = official_checkpoint()
    path = tmp_path / "model_checkpoint.pth"
    torch.save(checkpoint, path)
    model = L2LTR(L2LTROptions(**OFFICIAL))
    assert load_weights(model, path).startswith("weights:model_checkpoint.pth (sha256 ")
    g, a = checkpoint["model_grd"], checkpoint["model_sat"]
    e = "transformer.embeddings."
    unit = e + "hybrid_model.body.block2.unit2."  # 1-based official -> 0-based timm
    pairs = [
        (model.ground.cls_token, g[e + "cls_token"]),
        (model.aerial.pos_embed, a[e + "position_embeddings"]),
        (model.ground.proj.weight, g[e + "patch_embeddings.weight"]),
        (model.ground.backbone.stem.conv.weight, g[e + "hybrid_model.root.conv.weight"]),
        (model.ground.backbone.stem.norm.bias, g[e + "hybrid_model.root.gn.bias"]),
        (model.ground.backbone.stages[1].blocks[1].norm3.weight, g[unit + "gn3.weight"]),
        (model.ground.backbone.stages[1].blocks[1].conv2.weight, g[unit + "conv2.weight"]),
        (
            model.aerial.backbone.stages[0].blocks[0].downsample.conv.weight,
            a[e + "hybrid_model.body.block1.unit1.downsample.weight"],
        ),
        (
            model.aerial.backbone.stages[2].blocks[0].downsample.norm.bias,
            a[e + "hybrid_model.body.block3.unit1.gn_proj.bias"],
        ),
        (
            model.ground.encoder.blocks[1].norm1.weight,
            g["transformer.encoder.layer.1.attention_norm_1.weight"],
        ),
        (
            model.ground.encoder.blocks[1].norm_key.bias,
            g["transformer.encoder.layer.1.attention_norm_2.bias"],
        ),
        (
            model.ground.encoder.blocks[0].norm2.weight,
            g["transformer.encoder.layer.0.ffn_norm.weight"],
        ),
        (
            model.aerial.encoder.blocks[0].mlp.fc2.bias,
            a["transformer.encoder.layer.0.ffn.fc2.bias"],
        ),
        (
            model.ground.encoder.blocks[1].attn.k.weight,
            g["transformer.encoder.layer.1.attn.key.weight"],
        ),
        (
            model.ground.encoder.blocks[0].attn.proj.bias,
            g["transformer.encoder.layer.0.attn.out.bias"],
        ),
        (model.aerial.encoder.norm.weight, a["transformer.encoder.encoder_norm.weight"]),
    ]
    for ours, official in pairs:
        assert torch.equal(ours, official)
    # a bijection: every model tensor is exactly one official tensor (random values differ)
    sources = {id(t): t for view in ("model_grd", "model_sat") for t in checkpoint[view].values()}
    used = []
    for name, tensor in model.state_dict().items():
        match = [
            k for k, t in sources.items() if t.shape == tensor.shape and torch.equal(t, tensor)
        ]
        assert len(match) == 1, name
        used += match
    assert sorted(used) == sorted(sources)


def test_each_official_tensor_changes_the_descriptors() -> None:
    checkpoint = official_checkpoint()
    model = L2LTR(L2LTROptions(**OFFICIAL)).eval()
    images = torch.randn(2, 3, 32, 64)
    embed = {"model_grd": model.embed_ground, "model_sat": model.embed_aerial}

    def descriptor(ckpt: dict, view: str) -> torch.Tensor:
        model.load_state_dict(model.adapt_checkpoint(ckpt, "official"))
        with torch.no_grad():
            return embed[view](images)

    # a shift shared by every key (key bias, key-LayerNorm bias) adds the same q . c to all
    # of a query's scores and leaves the softmax unchanged: those land (above) but cannot show
    invariant = ("attn.key.bias", "attention_norm_2.bias")
    for view in ("model_grd", "model_sat"):
        base = descriptor(checkpoint, view)
        for key, value in checkpoint[view].items():
            if key.endswith(invariant):
                continue
            changed = {
                **checkpoint,
                view: {**checkpoint[view], key: value + torch.randn_like(value)},
            }
            # an unchanged model gives bitwise equal descriptors; a used tensor moves them
            assert (descriptor(changed, view) - base).abs().max() > 1e-6, f"{view}.{key}"


def test_official_checkpoint_errors_name_keys_and_shapes(tmp_path) -> None:
    from benchmark.weights import load_weights

    model = L2LTR(L2LTROptions(**OFFICIAL))
    extra = official_checkpoint()
    extra["model_grd"]["transformer.encoder.extra.weight"] = torch.zeros(3, 5)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(BenchmarkError, match=r"transformer\.encoder\.extra\.weight \(3, 5\)"):
        load_weights(model, tmp_path / "extra.pth")
    short = official_checkpoint()
    del short["model_sat"]["transformer.encoder.layer.1.ffn.fc1.bias"]
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(
        BenchmarkError, match=r"missing keys: aerial\.encoder\.blocks\.1\.mlp\.fc1\.bias"
    ):
        load_weights(model, tmp_path / "short.pth")


def test_projection_shortcut_norm_is_one_group_per_channel() -> None:
    stem = r50_stem(L2LTROptions(pretrained=False))
    norm = stem.stages[1].blocks[0].downsample.norm
    assert (norm.num_groups, norm.num_channels, norm.eps) == (512, 512, 1e-5)
    assert (stem.stages[1].blocks[0].norm1.num_groups, stem.stages[1].blocks[0].norm1.eps) == (
        32,
        1e-6,
    )
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 512, 3, 5)
    expected = F.group_norm(x, 512, norm.weight, norm.bias, eps=1e-5)  # nn.GroupNorm(C, C)
    torch.testing.assert_close(norm(x), expected)


def test_position_grid_resize_is_the_codes_first_order_zoom() -> None:
    from scipy import ndimage

    from plugins.l2ltr.pretrained import branch_state

    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 14 * 14, 8)
    state = branch_state({"pos_embed": pos}, (8, 32), self_cross=True)
    zoomed = ndimage.zoom(pos[0, 1:].reshape(14, 14, 8).numpy(), (8 / 14, 32 / 14, 1), order=1)
    torch.testing.assert_close(state["pos_embed"][0, 1:], torch.from_numpy(zoomed).reshape(-1, 8))
    torch.testing.assert_close(state["pos_embed"][0, 0], pos[0, 0])


def test_evaluating_an_official_checkpoint_needs_no_imagenet_weights(
    tmp_path, tiny_run: dict
) -> None:
    from benchmark.config import resolve
    from benchmark.jobs import plan, preflight
    from benchmark.registry import build_registry
    from benchmark.runner import run_job

    torch.save(official_checkpoint(), tmp_path / "model_checkpoint.pth")
    reg = build_registry()
    sizes = {k: v for k, v in OFFICIAL.items() if k != "pretrained"}  # paper: pretrained=true
    user = {**tiny_run, "epochs": 0, "model": sizes}
    cfg = resolve(reg.model("l2ltr"), user, quick=False)
    preflight(reg, [plan(reg, cfg, tmp_path / "model_checkpoint.pth")])  # it replaces them
    result = run_job(reg, cfg, weights=tmp_path / "model_checkpoint.pth")
    assert result.status == "ok", result.error
    assert result.initialisation.startswith("weights:model_checkpoint.pth (sha256 ")
    assert result.model_options["pretrained"] is True


def test_the_tiny_stem_normalises_by_batch_and_refuses_pretrained_weights() -> None:
    """From scratch, the tiny variant's BatchNorm stem (a GroupNorm one collapses, see the
    card); BiT's pretrained weights only fit the GroupNorm stem."""
    stem = r50_stem(L2LTROptions(**TINY))
    norms = {type(m).__name__ for m in stem.modules() if "Norm" in type(m).__name__}
    assert norms == {"BatchNormAct2d"}
    with pytest.raises(ValueError, match="stem_norm='batch' has no pretrained weights"):
        L2LTROptions(**{**TINY, "pretrained": True})
