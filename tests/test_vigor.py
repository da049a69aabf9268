"""VIGOR plugin: IOU/offset/hybrid losses, SAFA reuse, offset head, size, batches with semis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.data.base import CrossViewSplit, SourceGeometry
from benchmark.data.loader import PairDataset
from benchmark.data.transforms import InputPipeline
from benchmark.errors import BenchmarkError
from benchmark.losses import soft_margin_triplet
from benchmark.registry import build_registry
from plugins.safa import SpatialAwareAggregation
from plugins.vigor import SPEC, Vigor, VigorOptions
from plugins.vigor.losses import IouSemiLoss, OffsetLoss, VigorHybridLoss, square_iou

TINY = {
    "backbone": "tiny",
    "offset_hidden": 16,
    "ground_size": (32, 64),
    "aerial_size": (32, 32),
    "pretrained": False,
}


def overlap(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    return np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)


def test_iou_matches_a_direct_geometric_computation() -> None:
    rng = np.random.default_rng(0)
    side = 64.0
    d = rng.uniform(-side, side, size=(500, 2))
    # square A = [-L/2, L/2]^2, square B = A shifted by d: intersect the intervals per axis
    inter = overlap(-side / 2, side / 2, d[:, 0] - side / 2, d[:, 0] + side / 2) * overlap(
        -side / 2, side / 2, d[:, 1] - side / 2, d[:, 1] + side / 2
    )
    expected = inter / (2 * side**2 - inter)
    got = square_iou(torch.tensor(d), torch.full((500,), side)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_iou_hand_values_of_the_paper() -> None:
    side = torch.tensor([1.0, 1.0, 1.0])
    iou = square_iou(torch.tensor([[0.0, 0.0], [0.25, -0.25], [0.5, 0.5]]), side)
    # aligned 1; worst positive (L/4, L/4) 9/23; worst semi-positive (L/2, L/2) 1/7
    np.testing.assert_allclose(iou.numpy(), [1.0, 9 / 23, 1 / 7], atol=1e-12)


def unit(*v: float) -> list[float]:
    return [x / math.sqrt(sum(y * y for y in v)) for x in v]


def batch_and_outputs() -> tuple[dict, dict]:
    ground = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    aerial = torch.tensor([[0.8, 0.6], [0.6, 0.8]])  # s_pos = 0.8, 0.8
    semi = torch.tensor([unit(0.4, math.sqrt(1 - 0.16)), [0.8, 0.6]])  # s_semi = 0.4, 0.6
    offsets = torch.zeros(2, 4, 2)
    offsets[0, 0] = torch.tensor([0.0, 0.0])  # IOU_pos = 1
    offsets[0, 2] = torch.tensor([32.0, 0.0])  # r = 1/2 -> IOU = 1/3
    offsets[1, 0] = torch.tensor([16.0, 16.0])  # r = 9/16 -> IOU = 9/23
    offsets[1, 1] = torch.tensor([-32.0, 16.0])  # r = 3/8 -> IOU = 3/13
    batch = {
        "offsets": offsets,
        "semi_slot": torch.tensor([2, 1]),
        "tile_metres": torch.tensor([64.0, 64.0]),
    }
    outputs = {
        "ground": ground,
        "aerial": aerial,
        "semi": semi,
        "offset": torch.tensor([[0.5, -0.5], [0.0, 0.0]]),
    }
    return outputs, batch


def test_iou_loss_hand_value() -> None:
    outputs, batch = batch_and_outputs()
    expected = ((0.4 / 0.8 - 1 / 3) ** 2 + (0.6 / 0.8 - (3 / 13) / (9 / 23)) ** 2) / 2
    assert IouSemiLoss()(outputs, batch).item() == pytest.approx(expected, rel=1e-5)


def test_offset_loss_hand_value() -> None:
    outputs, batch = batch_and_outputs()
    # targets = offset / 32: (0, 0) and (0.5, 0.5); squared errors 0.5 and 0.5
    assert OffsetLoss()(outputs, batch).item() == pytest.approx(0.5, rel=1e-6)


def test_hybrid_is_triplet_first_then_adds_iou_and_offset() -> None:
    outputs, batch = batch_and_outputs()
    loss = VigorHybridLoss(stage1_epochs=2)
    triplet = soft_margin_triplet(outputs["ground"], outputs["aerial"], 10.0).item()
    loss.set_epoch(1)
    assert not loss.uses_semi
    assert loss(outputs, batch).item() == pytest.approx(triplet)
    loss.set_epoch(2)
    assert loss.uses_semi
    full = triplet + IouSemiLoss()(outputs, batch).item() / 10 + 0.5 / 100
    assert loss(outputs, batch).item() == pytest.approx(full, rel=1e-6)


def test_losses_explain_missing_inputs() -> None:
    outputs, batch = batch_and_outputs()
    with pytest.raises(BenchmarkError, match="semi-positives"):
        IouSemiLoss()({k: v for k, v in outputs.items() if k != "semi"}, batch)
    with pytest.raises(BenchmarkError, match="offset head"):
        OffsetLoss()({k: v for k, v in outputs.items() if k != "offset"}, batch)


def test_registered_model_and_losses() -> None:
    reg = build_registry()
    assert reg.model("vigor") is SPEC
    assert {"iou-semi", "offset", "vigor-hybrid"} <= set(reg.losses)
    assert {"paper", "tiny"} <= set(SPEC.variants)


def test_paper_config_size_and_structure_on_meta() -> None:
    with torch.device("meta"):
        model = Vigor(VigorOptions(pretrained=False))
    total = sum(p.numel() for p in model.parameters())
    assert total / 1e6 == pytest.approx(34.0, abs=0.05)  # VIGOR's SAFA-based model: ~34.0 M
    assert sum(p.numel() for p in model.offset.parameters()) == 8192 * 512 + 512 + 512 * 2 + 2
    assert isinstance(model.ground.safa, SpatialAwareAggregation)
    assert model.ground.safa.w1.shape == (8, 200, 100)  # 320x640 -> 10x20 positions
    assert model.aerial.safa.w1.shape == (8, 100, 50)  # 320x320 -> 10x10
    assert model.ground.safa.channel_pool == "max"
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert model.preprocess.polar is False
    assert model.descriptor_dim == 4096


def test_offset_head_reads_raw_descriptors_and_trains_both_branches() -> None:
    torch.manual_seed(0)
    model = Vigor(VigorOptions(**TINY)).eval()
    g, a = torch.rand(3, 3, 32, 64), torch.rand(3, 3, 32, 32)
    out = model(g, a)
    assert set(out) == {"ground", "aerial", "ground_raw", "aerial_raw", "offset"}
    torch.testing.assert_close(out["ground"].norm(dim=1), torch.ones(3))
    assert not torch.allclose(out["ground_raw"].norm(dim=1), torch.ones(3))
    direct = model.offset.net(torch.cat([out["aerial_raw"], out["ground_raw"]], 1))
    torch.testing.assert_close(out["offset"], direct)
    torch.testing.assert_close(model.predict_offsets(g, a), out["offset"])
    out["offset"].sum().backward()
    assert model.ground.trunk[0].weight.grad.abs().sum() > 0
    assert model.aerial.trunk[0].weight.grad.abs().sum() > 0


def test_no_offset_variant_is_safa_aggregation_only() -> None:
    model = Vigor(VigorOptions(**{**TINY, "offset_head": False}))
    out = model(torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 32))
    assert "offset" not in out and model.offset is None


def fake_split(semis: bool) -> CrossViewSplit:
    images = np.random.default_rng(0).integers(0, 255, size=(6, 16, 16, 3), dtype=np.uint8)
    offsets = np.arange(4 * 4 * 2, dtype=np.float64).reshape(4, 4, 2)
    return CrossViewSplit(
        name="train",
        load_ground=lambda i: images[i],
        load_aerial=lambda j: images[j],
        num_ground=4,
        num_aerial=6,
        positives=np.array([0, 1, 2, 3]),
        semi_positives=np.array([[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0]]) if semis else None,
        offsets=offsets if semis else None,
        aerial_tile_metres=64.0,
    )


def test_pair_batches_carry_a_semi_positive_and_offsets_on_vigor_style_data() -> None:
    model = Vigor(VigorOptions(**TINY))
    pipeline = InputPipeline(model.preprocess, SourceGeometry())
    torch.manual_seed(0)
    split = fake_split(semis=True)
    data = PairDataset(split, pipeline)
    seen = set()
    for epoch in range(8):  # the pick is a function of (seed, epoch, index)
        item = data[(2, epoch)]  # a batch of one
        assert data[(2, epoch)]["semi_slot"].item() == item["semi_slot"].item()
        slot = item["semi_slot"].item()
        seen.add(slot)
        j = int(split.semi_positives[2, slot - 1])
        inputs = data.to_model(item, torch.device("cpu"))
        torch.testing.assert_close(inputs["semi"][0], pipeline.aerial(split.load_aerial(j)))
        torch.testing.assert_close(item["offsets"][0], torch.tensor(split.offsets[2]).float())
        assert item["tile_metres"].item() == 64.0
    assert seen <= {1, 2, 3} and len(seen) > 1
    plain = PairDataset(fake_split(semis=False), pipeline)[0]
    assert "semi" not in plain and "offsets" not in plain
