"""One training step: the loss of a global batch (``TrainStep``), the arithmetic it runs in
(``Precision``) and how the optimizer steps on that loss, chosen once per run
(``optimizer_step``): one backward pass through the loss scaler, or ASAM's two."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from benchmark import distributed
from benchmark.config import RunConfig
from benchmark.errors import BenchmarkError
from benchmark.mining import MiningSampler
from benchmark.model import CrossViewModel
from benchmark.protocols import SemiPositiveLoss

if TYPE_CHECKING:
    from benchmark.sam import SAM


@dataclass(frozen=True)
class Precision:
    """The arithmetic of a training step: fp32, or autocast to bf16 or fp16 (fp16 with
    dynamic loss scaling; bf16 has fp32's range and needs none)."""

    name: str
    device: torch.device

    def autocast(self) -> AbstractContextManager[Any]:
        """The context a forward pass runs in."""
        if self.name == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.name == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """The loss scaler: active for fp16 only."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def precision_policy(cfg: RunConfig, device: torch.device) -> Precision:
    """The configured precision on DEVICE, or a clear error where it cannot run."""
    if cfg.precision == "fp16" and device.type != "cuda":
        raise BenchmarkError(
            f"precision=fp16 (--amp) trains with CUDA autocast and loss scaling, and this run "
            f"is on {device.type}. Use precision=bf16 or fp32 there (--set precision=bf16)."
        )
    return Precision(cfg.precision, device)


class TrainStep(torch.nn.Module):
    """The differentiable part of a step: embed a batch, gather the global batch, return the
    loss. DDP wraps this whole step, so parameters the loss does not reach (VIGOR's offset
    head in its triplet stage) are known to be unused."""

    def __init__(
        self,
        model: CrossViewModel,
        loss_fn: Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor],
        world: distributed.World,
        miner: MiningSampler | None,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.world = world
        self.miner = miner

    def forward(self, data: dict[str, Any]) -> torch.Tensor:
        """The loss of the global batch that DATA (this rank's slice) belongs to."""
        out = self.model(data["ground"], data["aerial"])
        if isinstance(self.loss_fn, SemiPositiveLoss) and self.loss_fn.uses_semi and "semi" in data:
            out["semi"] = self.model.embed_aerial(data["semi"])
        out = distributed.gather_outputs(out, self.world)
        whole = distributed.gather_data(data, self.world)
        if self.miner is not None:  # the mining cache keeps the latest training descriptors
            self.miner.observe(whole["index"], out["ground"], whole["aerial_index"], out["aerial"])
        return self.loss_fn(out, whole)


# Both steps back-propagate `loss * ranks`: each rank back-propagates the global loss through
# its own rows and DDP averages the ranks' gradients, so scaling by the rank count gives the
# global gradient.


@dataclass(frozen=True)
class ScaledStep:
    """One backward pass and one optimizer step through the loss scaler (a pass-through
    unless precision is fp16), gradients clipped first when grad_clip is set."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    model: torch.nn.Module
    grad_clip: float | None
    ranks: int

    def __call__(self, loss: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> None:
        """Step on LOSS (RECOMPUTE is not needed)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.ranks).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()


@dataclass(frozen=True)
class SharpnessAwareStep:
    """ASAM's step (benchmark/sam.py): back-propagate LOSS, move to w + e(w), back-propagate
    the loss recomputed there, clip when grad_clip is set, and step from w with that
    gradient."""

    optimizer: SAM
    model: torch.nn.Module
    grad_clip: float | None
    ranks: int

    def __call__(self, loss: torch.Tensor, recompute: Callable[[], torch.Tensor]) -> None:
        """Step on LOSS and on RECOMPUTE() at the perturbed weights."""
        (loss * self.ranks).backward()
        self.optimizer.first_step(zero_grad=True)
        (recompute() * self.ranks).backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.second_step(zero_grad=True)


def optimizer_step(
    cfg: RunConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    model: torch.nn.Module,
    ranks: int,
) -> ScaledStep | SharpnessAwareStep:
    """The optimizer step CFG asks for: ASAM's when sam_rho is set, else one scaled step."""
    if cfg.sam_rho is not None:
        return SharpnessAwareStep(optimizer, model, cfg.grad_clip, ranks)
    return ScaledStep(optimizer, scaler, model, cfg.grad_clip, ranks)
