"""AENet: MHNW loss on hand-made distances, ablation variants, full-size parameter count."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.config import model_options, resolve  # noqa: E402
from benchmark.errors import BenchmarkError  # noqa: E402
from benchmark.losses import pair_distances  # noqa: E402
from benchmark.registry import build_registry  # noqa: E402
from plugins.aenet import SPEC, AENet, AENetOptions  # noqa: E402
from plugins.aenet.loss import (  # noqa: E402
    BatchHardSoftMargin,
    MHNWLoss,
    batch_hard_from_distances,
    mhnw_from_distances,
)

ALPHA = 10.0
TINY = {
    "backbone": "test_efficientnet",
    "ground_size": (32, 128),
    "aerial_size": (32, 128),
    "pretrained": False,
}


def sp(x: float) -> float:
    """ln(1 + e^x)."""
    return math.log1p(math.exp(x))


# Rows are anchors, column a of row a the positive. Anchor 0: no hard negative (positive 0.2,
# negatives 0.5, 0.9); anchor 1: one (0.3 < 0.6); anchor 2: two (0.2, 0.5 < 0.8), plus 0.9.
HAND = torch.tensor(
    [
        [0.2, 0.5, 0.9, 1.0],
        [0.3, 0.6, 0.7, 1.1],
        [0.2, 0.5, 0.8, 0.9],
        [0.4, 0.1, 0.3, 0.7],
    ],
    dtype=torch.float64,
)


def hand_anchor_losses() -> tuple[list[float], list[int]]:
    """Per-anchor summed terms and term counts of HAND, by Eq. 3.1-3.3."""
    a0 = sp(ALPHA * (0.2 - 0.5))  # no hard negative: hardest negative (0.5)
    a1 = sp(ALPHA * (0.6 - 0.3))  # one hard negative: batch-hard fallback
    # anchor 2: D = 0.6, 0.3 -> w = 1, 0.5
    a2 = 1.0 * sp(ALPHA * 0.6) + 0.5 * sp(ALPHA * 0.3)
    # anchor 3: positive 0.7, hard 0.4, 0.1, 0.3 -> D = 0.3, 0.6, 0.4 -> w = 0.5, 1, 2/3
    a3 = 0.5 * sp(ALPHA * 0.3) + 1.0 * sp(ALPHA * 0.6) + (2 / 3) * sp(ALPHA * 0.4)
    return [a0, a1, a2, a3], [1, 1, 2, 3]


def test_mhnw_values_with_zero_one_and_several_hard_negatives() -> None:
    sums, counts = hand_anchor_losses()
    per_anchor = [s / c for s, c in zip(sums, counts, strict=True)]
    anchor = mhnw_from_distances(HAND, ALPHA, "anchor")
    assert anchor.item() == pytest.approx(sum(per_anchor) / 4, rel=1e-12)
    pooled = mhnw_from_distances(HAND, ALPHA, "pooled")
    assert pooled.item() == pytest.approx(sum(sums) / sum(counts), rel=1e-12)


def test_mhnw_gradients_flow_through_distances_only() -> None:
    d = HAND.clone().requires_grad_(True)
    mhnw_from_distances(d, ALPHA, "anchor").backward()
    expected = torch.zeros_like(HAND)
    n = 4.0

    def term(row: int, neg: int, w: float, count: int) -> None:
        # d/d(d_ap) and d/d(d_an) of w * softplus(alpha (d_ap - d_an)) / count / n, w constant
        g = w * ALPHA / (1 + math.exp(-ALPHA * (HAND[row, row] - HAND[row, neg]).item()))
        expected[row, row] += g / count / n
        expected[row, neg] -= g / count / n

    term(0, 1, 1.0, 1)
    term(1, 0, 1.0, 1)
    term(2, 0, 1.0, 2)
    term(2, 1, 0.5, 2)
    term(3, 0, 0.5, 3)
    term(3, 1, 1.0, 3)
    term(3, 2, 2 / 3, 3)
    torch.testing.assert_close(d.grad, expected, rtol=1e-9, atol=1e-12)


def test_batch_hard_soft_margin_is_eq_3_1() -> None:
    hardest = [0.5, 0.3, 0.2, 0.1]
    expected = sum(sp(ALPHA * (HAND[i, i].item() - hardest[i])) for i in range(4)) / 4
    assert batch_hard_from_distances(HAND, ALPHA).item() == pytest.approx(expected, rel=1e-12)


def test_losses_use_ground_anchors_and_optionally_both_directions() -> None:
    torch.manual_seed(0)
    out = {
        "ground": F.normalize(torch.randn(6, 16), dim=1),
        "aerial": F.normalize(torch.randn(6, 16), dim=1),
    }
    d = pair_distances(out["ground"], out["aerial"])  # row = aerial
    torch.testing.assert_close(MHNWLoss()(out, {}), mhnw_from_distances(d.T))
    both = (mhnw_from_distances(d.T) + mhnw_from_distances(d)) / 2
    torch.testing.assert_close(MHNWLoss(symmetric=True)(out, {}), both)
    torch.testing.assert_close(BatchHardSoftMargin()(out, {}), batch_hard_from_distances(d.T))
    with pytest.raises(BenchmarkError, match="reduction"):
        MHNWLoss(reduction="sum")


def test_losses_are_registered_for_any_model() -> None:
    reg = build_registry()
    assert reg.loss("mhnw").build is MHNWLoss
    assert reg.loss("soft-margin-batch-hard").build is BatchHardSoftMargin
    assert SPEC.recipe.loss == "mhnw"
    recipe = SPEC.recipe
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == ("adamw", 1e-5, 5e-5)
    assert recipe.batch_size == 24


@pytest.mark.parametrize(
    ("variant", "loss"),
    [
        ("paper", MHNWLoss()),
        ("backbone-only", MHNWLoss()),
        ("bam", MHNWLoss()),
        ("cbam", MHNWLoss()),
        ("gap", MHNWLoss()),
        ("paper", BatchHardSoftMargin()),
    ],
    ids=["paper", "backbone-only", "bam", "cbam", "gap", "paper-batch-hard"],
)
def test_ablation_variants_train_at_tiny_size(variant: str, loss: object) -> None:
    torch.manual_seed(0)
    model = AENet(AENetOptions(**{**SPEC.variants[variant], **TINY}))
    out = model(torch.randn(4, 3, 32, 128), torch.randn(4, 3, 32, 128))
    dim = 256 if variant == "gap" else 256 * 1 * 4
    assert out["ground"].shape == out["aerial"].shape == (4, dim) == (4, model.descriptor_dim)
    torch.testing.assert_close(out["ground"].norm(dim=1), torch.ones(4))
    loss(out, {}).backward()
    for branch in model.branches().values():
        grads = [p.grad for p in branch.attention.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        if variant != "backbone-only":
            assert grads and any(g.abs().sum() > 0 for g in grads)
        assert branch.backbone.conv_stem.weight.grad.abs().sum() > 0


def test_full_config_matches_reported_size() -> None:
    with torch.device("meta"):
        model = AENet(AENetOptions(pretrained=False))
        gap = AENet(AENetOptions(descriptor="gap", pretrained=False))
    total = sum(p.numel() for p in model.parameters())
    assert abs(total / 1e6 - 40.34) / 40.34 < 0.01
    assert sum(p.numel() for p in model.ground.attention.parameters()) == 300
    assert model.descriptor_dim == 1280 * 4 * 16 == 81_920
    assert gap.descriptor_dim == 1280
    pre = model.preprocess
    assert (pre.ground_size, pre.aerial_size, pre.polar) == ((128, 512), (128, 512), True)
    assert pre.mean == (0.5, 0.5, 0.5)


def test_bad_inputs_fail_clearly() -> None:
    with pytest.raises(BenchmarkError, match="same input size"):
        AENet(AENetOptions(**{**TINY, "aerial_size": (64, 256)}))
    with pytest.raises(ValueError, match="not a timm model"):
        AENetOptions(backbone="efficientnet_v9")
    AENet(AENetOptions(**{**TINY, "aerial_size": (64, 256), "descriptor": "gap"}))


def test_local_weights_file_loads_into_both_backbones(tmp_path) -> None:
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_efficientnet", pretrained=False)  # with its classifier
    path = tmp_path / "effnet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = AENet(AENetOptions(**{**TINY, "pretrained": str(path)}))
    for branch in (model.ground, model.aerial):
        torch.testing.assert_close(branch.backbone.conv_stem.weight, source.conv_stem.weight)
    assert model.initialisation.startswith("imagenet:effnet.safetensors (sha256 ")


def test_quick_protocol_config_builds() -> None:
    run = resolve(SPEC, {}, quick=True)
    assert run.variant == "tiny" and run.loss == "mhnw"
    model = AENet(model_options(SPEC, run))
    assert model.ground.backbone.default_cfg["architecture"] == "test_efficientnet"
