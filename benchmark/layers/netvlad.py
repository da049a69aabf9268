"""NetVLAD aggregation in the form CVM-Net uses (no BatchNorm, separate centroids)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NetVLAD(nn.Module):
    """NetVLAD over a (B, D, H, W) feature map -> (B, D*K) unit-norm descriptor.

    Steps (Arandjelovic et al., CVPR 2016; CVM-Net's ``loupe.py``): L2-normalise every
    local feature x_n over channels; soft-assign a_n = softmax_k(W^T x_n + b) (no
    BatchNorm); aggregate residuals V[:, k] = sum_n a_nk x_n - (sum_n a_nk) C[:, k] with
    centroids C learnt separately from W; intra-normalise each column V[:, k]; flatten
    feature-major (index d*K + k); L2-normalise.
    W, b and C are initialised from N(0, 1/sqrt(D)).
    """

    def __init__(self, dim: int, clusters: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.clusters = clusters
        self.assign_weight = nn.Parameter(torch.empty(dim, clusters))
        self.assign_bias = nn.Parameter(torch.empty(clusters))
        self.centroids = nn.Parameter(torch.empty(dim, clusters))
        std = 1.0 / math.sqrt(dim)
        for p in (self.assign_weight, self.assign_bias, self.centroids):
            nn.init.normal_(p, 0.0, std)

    @property
    def output_dim(self) -> int:
        """Length of the flattened descriptor, D*K."""
        return self.dim * self.clusters

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B, D*K), L2-normalised."""
        x = F.normalize(features.flatten(2), p=2, dim=1)  # (B, D, N)
        logits = torch.einsum("bdn,dk->bnk", x, self.assign_weight) + self.assign_bias
        a = logits.softmax(dim=-1)  # (B, N, K)
        v = torch.einsum("bnk,bdn->bdk", a, x) - a.sum(1).unsqueeze(1) * self.centroids
        v = F.normalize(v, p=2, dim=1)  # intra-normalisation over D
        return F.normalize(v.flatten(1), p=2, dim=1)
