"""The weighted soft-margin triplet loss against a value computed by hand."""

import math

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.losses import SoftMarginTriplet, far_pairs, soft_margin_triplet


def test_soft_margin_triplet_hand_value() -> None:
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # D[i, j] = 2 - 2 <a_i, g_j>: [[0, 2], [0.8, 0.4]]; positives 0 and 0.4
    sp = lambda x: math.log1p(math.exp(10 * x))  # noqa: E731
    g2s = (sp(0 - 0) + sp(0 - 0.8) + sp(0.4 - 2) + sp(0.4 - 0.4)) / 2
    s2g = (sp(0 - 0) + sp(0 - 2) + sp(0.4 - 0.8) + sp(0.4 - 0.4)) / 2
    expected = (g2s + s2g) / 2
    assert abs(soft_margin_triplet(g, a, 10.0).item() - expected) < 1e-6
    loss = SoftMarginTriplet(alpha=10.0)({"ground": g, "aerial": a}, {})
    assert abs(loss.item() - expected) < 1e-6


def test_gradient_pushes_positives_together() -> None:
    torch.manual_seed(0)
    g = torch.nn.functional.normalize(torch.randn(6, 8), dim=1).requires_grad_()
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    soft_margin_triplet(g, a).backward()
    step = torch.nn.functional.normalize(g - 0.05 * g.grad, dim=1)
    assert soft_margin_triplet(step, a) < soft_margin_triplet(g.detach(), a)


def utm_batch(near: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four pairs whose ground descriptors are unit axes, so <aerial_i, ground_j> = a[i, j]
    and one entry of a moves one pair score only; pair 1 stands NEAR metres east of pair 0,
    the others hundreds of metres away, at UTM-sized coordinates."""
    g = torch.eye(4, 8)
    a = torch.rand(4, 8, generator=torch.Generator().manual_seed(0))
    xy = torch.tensor(
        [[330_000.0, 6_100_000.0], [330_000.0 + near, 6_100_000.0], [330_400.0, 6_100_000.0],
         [330_000.0, 6_100_700.0]],
        dtype=torch.float64,
    )  # fmt: skip
    return g, a, xy


def test_a_negative_within_25_m_is_not_a_negative() -> None:
    """SAFA's CVACT training: the score of a pair 10 m apart does not reach the loss."""
    g, a, xy = utm_batch(near=10.0)
    masked = SoftMarginTriplet(alpha=10.0, min_negative_distance_m=25.0)
    plain = SoftMarginTriplet(alpha=10.0)
    near, far = a.clone(), a.clone()
    near[1, 0] += 0.7  # aerial 1 against ground 0: 10 m apart
    far[2, 0] += 0.7  # aerial 2 against ground 0: 400 m apart

    def value(loss: SoftMarginTriplet, aerial: torch.Tensor) -> float:
        return loss({"ground": g, "aerial": aerial}, {"ground_xy": xy}).item()

    # a masked pair contributes softplus(0) = ln 2 whatever its score: exactly the same sum
    assert value(masked, near) == value(masked, a)
    assert value(masked, far) != value(masked, a)
    assert value(plain, near) != value(plain, a)  # unmasked, the same change counts
    aerial = a.clone().requires_grad_()
    masked({"ground": g, "aerial": aerial}, {"ground_xy": xy}).backward()
    assert aerial.grad[1, 0] == 0 and aerial.grad[0, 1] == 0 and aerial.grad[2, 0] != 0


def test_the_masked_loss_is_safas_formula() -> None:
    """Every entry keeps its softplus term (masked ones as ln 2) and the sum is divided by
    the number of pairs at least 25 m apart: here 16 - 4 diagonal - 2 near = 10."""
    g, a, xy = utm_batch(near=10.0)
    d = 2 - 2 * a @ g.T
    pos = torch.diagonal(d)
    useful = torch.ones(4, 4) - torch.eye(4)
    useful[0, 1] = useful[1, 0] = 0
    sp = torch.nn.functional.softplus
    g2s = sp(10 * (pos[None, :] - d) * useful).sum() / 10
    s2g = sp(10 * (pos[:, None] - d) * useful).sum() / 10
    loss = SoftMarginTriplet(min_negative_distance_m=25.0)({"ground": g, "aerial": a},
                                                           {"ground_xy": xy})  # fmt: skip
    assert torch.equal(far_pairs(xy, 25.0), useful)
    assert loss.item() == pytest.approx(((g2s + s2g) / 2).item(), rel=1e-6)


def test_without_near_pairs_the_mask_changes_nothing() -> None:
    g, a, xy = utm_batch(near=30.0)
    masked = SoftMarginTriplet(min_negative_distance_m=25.0)({"ground": g, "aerial": a},
                                                             {"ground_xy": xy})  # fmt: skip
    plain = SoftMarginTriplet()({"ground": g, "aerial": a}, {})
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)


def test_the_mask_needs_positions() -> None:
    g, a, _ = utm_batch(near=10.0)
    with pytest.raises(BenchmarkError, match="needs the ground positions"):
        SoftMarginTriplet(min_negative_distance_m=25.0)({"ground": g, "aerial": a}, {})
