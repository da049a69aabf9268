"""The optimizer step a run takes, chosen once from its settings: one clipped, scaled step,
or ASAM's two passes when sam_rho is set."""

from __future__ import annotations

import copy

import torch
from torch import nn

from benchmark.config import RunConfig
from benchmark.training.optim import build_optimizer
from benchmark.training.step import ScaledStep, SharpnessAwareStep, optimizer_step
from tests.test_sam import sam_step


def _data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(3, 2), torch.randn(8, 3), 10 * torch.randn(8, 2)


def test_grad_clip_bounds_the_update_of_a_plain_step() -> None:
    model, x, y = _data()
    cfg = RunConfig(plugin="safa", optimizer="sgd", lr=1.0, weight_decay=0.0, grad_clip=0.1)
    optimizer = build_optimizer(cfg, model)
    step = optimizer_step(cfg, optimizer, torch.amp.GradScaler("cpu", enabled=False), model, 1)
    assert isinstance(step, ScaledStep)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    step(nn.functional.mse_loss(model(x), y), lambda: nn.functional.mse_loss(model(x), y))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.linalg.vector_norm(after - before).item() <= 0.1 + 1e-6  # lr 1, first step


def test_sam_rho_takes_asams_two_pass_step() -> None:
    model, x, y = _data()
    reference = copy.deepcopy(model)
    cfg = RunConfig(plugin="safa", optimizer="adamw", lr=1e-2, sam_rho=2.0)
    optimizer = build_optimizer(cfg, model)
    step = optimizer_step(cfg, optimizer, torch.amp.GradScaler("cpu", enabled=False), model, 1)
    assert isinstance(step, SharpnessAwareStep)
    passes = []

    def recompute() -> torch.Tensor:
        passes.append(1)
        return nn.functional.mse_loss(model(x), y)

    step(nn.functional.mse_loss(model(x), y), recompute)
    sam_step(reference, build_optimizer(cfg, reference), x, y)
    assert len(passes) == 1
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(ours, theirs)
