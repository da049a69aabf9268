"""A two-branch CNN with generalised-mean (GeM) pooling: the example method's network."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from benchmark.api import ModelOptions, Preprocess, TwoBranchModel


class GeMOptions(ModelOptions):
    """The example's options: the benchmark's common ones plus the network's size."""

    width: int = Field(64, ge=1, description="channels of the first conv stage (doubled per stage)")
    stages: int = Field(4, ge=1, le=6, description="stride-2 conv stages per branch")
    dim: int = Field(512, ge=1, description="descriptor dimension")
    p: float = Field(3.0, gt=0, description="initial GeM exponent (learned)")


class GeM(nn.Module):
    """Generalised-mean pooling over H x W with a learned exponent p."""

    def __init__(self, p: float, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C)."""
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


def branch(opts: GeMOptions) -> nn.Sequential:
    """Conv-BN-ReLU stages (stride 2), GeM pooling and a linear projection to the descriptor."""
    layers: list[nn.Module] = []
    channels = 3
    for i in range(opts.stages):
        out = opts.width * 2**i
        layers += [
            nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        channels = out
    return nn.Sequential(*layers, GeM(opts.p), nn.Linear(channels, opts.dim))


class GeMNet(TwoBranchModel):
    """Unshared ground and aerial branches with the same architecture."""

    def __init__(self, opts: GeMOptions) -> None:
        super().__init__()
        self.ground = branch(opts)
        self.aerial = branch(opts)
        self.preprocess = Preprocess(opts.ground_size, opts.aerial_size, opts.polar)
        self.descriptor_dim = opts.dim
