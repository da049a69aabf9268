"""The weighted soft-margin triplet loss against a value computed by hand."""

import math

import torch

from benchmark.losses import SoftMarginTriplet, soft_margin_triplet


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
