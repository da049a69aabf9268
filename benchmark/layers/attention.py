"""Attention modules applied to a (B, C, H, W) feature map: Triplet Attention, BAM, CBAM.

Each follows its own paper; AENet compares the three after an EfficientNetV2 backbone.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionGate(nn.Module):
    """One Triplet Attention branch on an already-permuted map (B, A, P, Q).

    Z-pool over dim 1 (concatenate max and mean -> 2 channels), 7x7 conv (2 -> 1, no bias),
    BatchNorm (momentum 0.01), sigmoid; the input is multiplied by the resulting (B, 1, P, Q)
    map. 100 parameters.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weight X by its Z-pool attention map."""
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class TripletAttention(nn.Module):
    """Triplet Attention (Misra et al., WACV 2021): three rotated gates, averaged.

    Branch C-W permutes to (B, H, C, W) and pools over H; branch H-C permutes to
    (B, W, H, C) and pools over W; branch H-W pools over C. Each branch has its own gate;
    the output is the mean of the three re-permuted results. 300 parameters for any C, H, W.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.cw = AttentionGate(kernel_size)
        self.hc = AttentionGate(kernel_size)
        self.hw = AttentionGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        cw = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        hc = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        return (cw + hc + self.hw(x)) / 3


class BAM(nn.Module):
    """Bottleneck Attention Module (Park et al., BMVC 2018): F + F * sigmoid(Mc(F) + Ms(F)).

    Channel branch Mc = BN(MLP(AvgPool(F))) with one hidden layer of C/r units (ReLU);
    spatial branch Ms = BN(f3(f2(f1(f0(F))))): 1x1 conv to C/r, two 3x3 convs with dilation d,
    1x1 conv to one map, ReLU between them. Defaults r = 16, d = 4 as in the paper.
    """

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.BatchNorm1d(channels),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
            nn.BatchNorm2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mc = self.channel(x.mean((2, 3)))[:, :, None, None]
        attention = torch.sigmoid(mc + self.spatial(x))
        return x + x * attention


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018): channel then spatial.

    Channel: Mc = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))), one shared MLP C -> C/r -> C
    (ReLU), F' = Mc * F. Spatial: Ms = sigmoid(conv7x7([AvgPool_c(F'); MaxPool_c(F')])),
    output Ms * F'. Default r = 16 as in the paper.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        mc = torch.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3))))
        x = x * mc[:, :, None, None]
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))
