"""Sharpness-aware minimisation (SAM / adaptive ASAM) as a wrapper around any optimizer.

One training step takes two forward/backward passes::

    loss(model(batch)).backward(); opt.first_step(zero_grad=True)    # w -> w + e(w)
    loss(model(batch)).backward(); opt.second_step(zero_grad=True)   # back to w, base step

With ``adaptive=True`` (ASAM, Kwon et al. 2021) the perturbation is scaled per weight:
``e(w) = rho * w^2 * g / || |w| * g ||``; with ``adaptive=False`` it is plain SAM,
``e(w) = rho * g / ||g||``. The norm is taken over all parameters together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from benchmark.errors import BenchmarkError

EPS = 1e-12


class SAM(torch.optim.Optimizer):
    """Wrap BASE_OPTIMIZER_CLS(params, **base_kwargs) with a (adaptive) sharpness-aware step.

    ``base_optimizer`` is exposed (and shares ``param_groups``) so LR schedulers and
    gradient clipping can drive it; ``state_dict`` is the base optimizer's.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer_cls: type[torch.optim.Optimizer],
        rho: float = 2.0,
        adaptive: bool = True,
        **base_kwargs: Any,
    ) -> None:
        if rho <= 0:
            raise BenchmarkError(f"SAM radius rho must be positive, got {rho}. Try sam_rho=2.0.")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def _scaled_grad_norm(self) -> torch.Tensor:
        """|| T_w g || over all parameters (T_w = |w| when adaptive, identity otherwise)."""
        norms = [
            ((p.abs() if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            raise BenchmarkError(
                "SAM first_step found no gradients: call loss.backward() before first_step()."
            )
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every weight to w + e(w), remembering w (ascent step)."""
        norm = self._scaled_grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + EPS)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and let the base optimizer step with the gradient taken at w + e(w)."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """Full step after a first loss.backward(); CLOSURE recomputes the loss and backprops."""
        if closure is None:
            raise BenchmarkError(
                "SAM.step needs a closure that recomputes the loss and calls backward(); "
                "or call first_step() and second_step() around a second forward/backward."
            )
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (SAM keeps nothing between steps)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the base optimizer's state."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
