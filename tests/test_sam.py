"""ASAM: two forward/backward passes per step and the adaptive perturbation formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.sam import SAM


def sam_step(model: nn.Module, opt: SAM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One training step exactly as the runner performs it when sam_rho is set."""
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.first_step(zero_grad=True)
    nn.functional.mse_loss(model(x), y).backward()
    opt.second_step(zero_grad=True)
    return loss


def test_step_takes_two_forward_and_backward_passes() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    forwards, backwards = [], []
    model.register_forward_hook(lambda m, i, o: forwards.append(1))
    model.weight.register_hook(lambda g: backwards.append(1))
    opt = SAM(model.parameters(), torch.optim.AdamW, rho=2.0, adaptive=True, lr=1e-2)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    before = model.weight.detach().clone()
    for _ in range(3):
        sam_step(model, opt, x, y)
    assert len(forwards) == 6 and len(backwards) == 6
    assert not torch.equal(model.weight, before)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("adaptive", [True, False])
def test_first_step_perturbation_formula(adaptive: bool) -> None:
    w1 = nn.Parameter(torch.tensor([1.0, -2.0]))
    w2 = nn.Parameter(torch.tensor([0.5]))
    g1, g2 = torch.tensor([0.3, 0.4]), torch.tensor([-1.0])
    w1.grad, w2.grad = g1.clone(), g2.clone()
    rho = 0.5
    opt = SAM([w1, w2], torch.optim.SGD, rho=rho, adaptive=adaptive, lr=0.1)
    opt.first_step()
    if adaptive:  # e(w) = rho * w^2 g / || |w| g ||
        norm = torch.cat([torch.tensor([1.0, 2.0]) * g1, torch.tensor([0.5]) * g2]).norm()
        e1 = rho * torch.tensor([1.0, 4.0]) * g1 / norm
        e2 = rho * torch.tensor([0.25]) * g2 / norm
    else:  # e(w) = rho * g / ||g||
        norm = torch.cat([g1, g2]).norm()
        e1, e2 = rho * g1 / norm, rho * g2 / norm
    torch.testing.assert_close(w1.detach(), torch.tensor([1.0, -2.0]) + e1)
    torch.testing.assert_close(w2.detach(), torch.tensor([0.5]) + e2)


def test_second_step_restores_and_uses_the_perturbed_gradient() -> None:
    # loss = 0.5 * a * w^2 -> gradient a * w; SGD step from w with the gradient at w + e
    a, lr, rho = 3.0, 0.1, 0.2
    w = nn.Parameter(torch.tensor([2.0]))
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, lr=lr)
    (0.5 * a * w**2).sum().backward()
    opt.first_step(zero_grad=True)
    perturbed = w.detach().clone()  # 2 + rho * 4 * 6 / 12 = 2.4
    torch.testing.assert_close(perturbed, torch.tensor([2.4]))
    (0.5 * a * w**2).sum().backward()
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), torch.tensor([2.0]) - lr * a * perturbed)


def test_scheduler_drives_the_base_optimizer_and_state_round_trips() -> None:
    model = nn.Linear(2, 1)
    opt = SAM(model.parameters(), torch.optim.AdamW, lr=1.0, weight_decay=0.03)
    sched = torch.optim.lr_scheduler.LambdaLR(opt.base_optimizer, lambda step: 0.5**step)
    sam_step(model, opt, torch.randn(3, 2), torch.randn(3, 1))
    sched.step()
    assert opt.param_groups[0]["lr"] == opt.base_optimizer.param_groups[0]["lr"] == 0.5
    state = opt.state_dict()
    fresh = SAM(model.parameters(), torch.optim.AdamW, lr=1.0)
    fresh.load_state_dict(state)
    assert fresh.base_optimizer.state_dict()["state"][0]["step"] == 1


def test_misuse_is_explained() -> None:
    w = nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    with pytest.raises(BenchmarkError, match="backward"):
        opt.first_step()
    with pytest.raises(BenchmarkError, match="closure"):
        opt.step()
    with pytest.raises(BenchmarkError, match="rho"):
        SAM([w], torch.optim.SGD, rho=0.0, lr=0.1)


def test_step_with_closure_matches_the_two_calls() -> None:
    a, lr = 3.0, 0.1
    w = nn.Parameter(torch.tensor([2.0]))
    opt = SAM([w], torch.optim.SGD, rho=0.2, adaptive=True, lr=lr)

    def closure() -> torch.Tensor:
        loss = (0.5 * a * w**2).sum()
        loss.backward()
        return loss

    closure()
    opt.step(closure)
    torch.testing.assert_close(w.detach(), torch.tensor([2.0]) - lr * a * torch.tensor([2.4]))
