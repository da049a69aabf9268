"""The recipe's optimizer (optionally wrapped in ASAM) and its per-step learning-rate
schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from benchmark.config import RunConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def build_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over trainable parameters (wrapped in ASAM when sam_rho is set)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = 0.9
    else:
        kwargs["eps"] = cfg.adam_eps
    if cfg.sam_rho is not None:
        from benchmark.sam import SAM

        return SAM(params, OPTIMIZERS[cfg.optimizer], rho=cfg.sam_rho, adaptive=True, **kwargs)
    return OPTIMIZERS[cfg.optimizer](params, **kwargs)


def build_schedule(
    cfg: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step LR factor: linear warm-up, then constant, cosine to 0, or VIGOR's 0.1^(t/150k)."""
    base = getattr(optimizer, "base_optimizer", optimizer)
    total_steps = steps_per_epoch * cfg.epochs
    warm = cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)
    schedule = cfg.schedule

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "cosine":
            span = max(1, total_steps - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span)))
        if schedule == "exponential":
            return 0.1 ** (step / 150_000)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(base, factor)
