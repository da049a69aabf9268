"""Triplet Attention, BAM and CBAM against direct computations of their definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.layers import BAM, CBAM, TripletAttention


def _randomise(module: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _gate_map(pooled: torch.Tensor, gate: nn.Module) -> torch.Tensor:
    """sigmoid(BN(conv7x7(pooled))) in eval mode, written with functional ops."""
    z = F.conv2d(pooled, gate.conv.weight, padding=3)
    bn = gate.bn
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    return torch.sigmoid(z * bn.weight + bn.bias)


def test_triplet_attention_equals_direct_branches() -> None:
    torch.manual_seed(0)
    ta = TripletAttention()
    _randomise(ta)
    ta.eval()
    x = torch.randn(2, 6, 4, 5)
    # C-W branch: pool over H -> map over (C, W)
    s_cw = _gate_map(torch.stack([x.amax(2), x.mean(2)], 1), ta.cw)[:, 0]  # (B, C, W)
    branch_cw = x * s_cw[:, :, None, :]
    # H-C branch: pool over W -> map over (H, C)
    pooled_hc = torch.stack([x.amax(3).transpose(1, 2), x.mean(3).transpose(1, 2)], 1)
    s_hc = _gate_map(pooled_hc, ta.hc)[:, 0]  # (B, H, C)
    branch_hc = x * s_hc.transpose(1, 2)[:, :, :, None]
    # H-W branch: pool over C -> spatial map
    s_hw = _gate_map(torch.stack([x.amax(1), x.mean(1)], 1), ta.hw)  # (B, 1, H, W)
    branch_hw = x * s_hw
    expected = (branch_cw + branch_hc + branch_hw) / 3
    torch.testing.assert_close(ta(x), expected)


def test_triplet_attention_has_300_parameters_and_trains() -> None:
    ta = TripletAttention()
    assert sum(p.numel() for p in ta.parameters()) == 300
    assert ta.cw.bn.momentum == 0.01
    x = torch.randn(3, 8, 4, 16, requires_grad=True)
    ta(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ta.parameters())


def _bam_direct(bam: BAM, x: torch.Tensor) -> torch.Tensor:
    """F + F * sigmoid(BN(MLP(avgpool F)) + BN(1x1(3x3d(3x3d(1x1 F))))) with eval BN."""
    lin1, _, lin2, bn1 = bam.channel
    c0, _, c1, _, c2, _, c3, bn2 = bam.spatial
    h = F.relu(F.linear(x.mean((2, 3)), lin1.weight, lin1.bias))
    mc = F.batch_norm(
        F.linear(h, lin2.weight, lin2.bias),
        bn1.running_mean,
        bn1.running_var,
        bn1.weight,
        bn1.bias,
        eps=bn1.eps,
    )
    s = F.relu(F.conv2d(x, c0.weight, c0.bias))
    s = F.relu(F.conv2d(s, c1.weight, c1.bias, padding=4, dilation=4))
    s = F.relu(F.conv2d(s, c2.weight, c2.bias, padding=4, dilation=4))
    s = F.conv2d(s, c3.weight, c3.bias)
    ms = F.batch_norm(s, bn2.running_mean, bn2.running_var, bn2.weight, bn2.bias, eps=bn2.eps)
    return x + x * torch.sigmoid(mc[:, :, None, None] + ms)


def test_bam_equals_direct_definition_and_is_residual() -> None:
    torch.manual_seed(0)
    bam = BAM(32)
    _randomise(bam)
    bam.eval()
    x = torch.randn(2, 32, 4, 16)
    torch.testing.assert_close(bam(x), _bam_direct(bam, x))
    # attention saturated at 0 -> identity; at 1 -> 2F (F + F * 1)
    bam.spatial[-1].bias.data.fill_(-50.0)
    torch.testing.assert_close(bam(x), x, atol=1e-6, rtol=0)
    bam.spatial[-1].bias.data.fill_(50.0)
    torch.testing.assert_close(bam(x), 2 * x, atol=1e-5, rtol=0)


def test_cbam_equals_direct_definition() -> None:
    torch.manual_seed(0)
    cbam = CBAM(32)
    x = torch.randn(2, 32, 4, 16)
    lin1, _, lin2 = cbam.mlp

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return F.linear(F.relu(F.linear(v, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)

    mc = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    refined = x * mc[:, :, None, None]
    pooled = torch.stack([refined.mean(1), refined.amax(1)], 1)  # [avg; max] order
    ms = torch.sigmoid(F.conv2d(pooled, cbam.spatial.weight, cbam.spatial.bias, padding=3))
    torch.testing.assert_close(cbam(x), refined * ms)


@pytest.mark.parametrize("layer", [BAM, CBAM], ids=["bam", "cbam"])
def test_bam_cbam_train_end_to_end(layer: type[nn.Module]) -> None:
    # seeded: on a batch of 4, about 1 init in 30 leaves BAM's ReLU spatial branch all-zero
    torch.manual_seed(0)
    module = layer(64)
    x = torch.randn(4, 64, 4, 16)
    out = module(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
