"""NetVLAD against a direct loop implementation of its formula (Arandjelovic et al.
2016, CVM-Net's loupe.py)."""

from __future__ import annotations

import math

import torch

from benchmark.layers import NetVLAD


def loop_netvlad(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """The formula written out element by element for one image x of shape (D, H, W)."""
    d_dim, h, wid = x.shape
    k_dim = w.shape[1]
    feats = []
    for i in range(h):
        for j in range(wid):
            v = x[:, i, j]
            feats.append(v / math.sqrt(sum(float(t) ** 2 for t in v)))
    vlad = [[0.0] * k_dim for _ in range(d_dim)]
    for f in feats:
        logits = [
            sum(float(f[d]) * float(w[d, k]) for d in range(d_dim)) + float(b[k])
            for k in range(k_dim)
        ]
        top = max(logits)
        exps = [math.exp(z - top) for z in logits]
        assign = [e / sum(exps) for e in exps]
        for k in range(k_dim):
            for d in range(d_dim):
                vlad[d][k] += assign[k] * (float(f[d]) - float(c[d, k]))
    for k in range(k_dim):  # intra-normalisation of each cluster column
        norm = math.sqrt(sum(vlad[d][k] ** 2 for d in range(d_dim)))
        for d in range(d_dim):
            vlad[d][k] /= norm
    flat = [vlad[d][k] for d in range(d_dim) for k in range(k_dim)]  # index d*K + k
    total = math.sqrt(sum(v * v for v in flat))
    return torch.tensor([v / total for v in flat], dtype=torch.float64)


def test_netvlad_matches_loop_formula() -> None:
    torch.manual_seed(0)
    layer = NetVLAD(dim=5, clusters=3).double()
    x = torch.randn(2, 5, 2, 3, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (2, 15)
    for i in range(2):
        expected = loop_netvlad(
            x[i], layer.assign_weight.detach(), layer.assign_bias.detach(), layer.centroids.detach()
        )
        torch.testing.assert_close(out[i], expected, rtol=1e-10, atol=1e-10)


def test_netvlad_output_is_unit_norm_with_unit_clusters() -> None:
    torch.manual_seed(1)
    layer = NetVLAD(dim=8, clusters=4)
    out = layer(torch.randn(3, 8, 4, 4))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    # feature-major layout: every cluster column (stride K) has equal norm 1/sqrt(K)
    cols = out.view(3, 8, 4).norm(dim=1)
    torch.testing.assert_close(cols, torch.full((3, 4), 0.5))


def test_netvlad_cvm_net_size_and_gradients() -> None:
    with torch.device("meta"):
        big = NetVLAD(512, 64)
    assert sum(p.numel() for p in big.parameters()) == 65_600
    assert big.output_dim == 32_768
    layer = NetVLAD(6, 3)
    layer(torch.randn(2, 6, 3, 3)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
