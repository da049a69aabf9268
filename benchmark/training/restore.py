"""What a checkpoint holds besides the weights (optimizer, schedule, loss scaler, RNG,
history, the mining cache), written after every epoch and on a stop, and read back when a
run resumes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark import checkpoint
from benchmark.mining import MiningSampler


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run continues: after EPOCH epochs and STEP more steps, with the loss
    sums of the unfinished epoch (PARTIAL), the history so far and that epoch's mining lists
    (MINED; None without mining)."""

    epoch: int
    step: int
    history: list[dict[str, float]]
    partial: dict[str, float]
    mined: dict[str, torch.Tensor] | None


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass(frozen=True)
class TrainingState:
    """The objects whose state a checkpoint keeps, to save and restore them together."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    miner: MiningSampler | None
    device: torch.device

    def save(
        self,
        ckpt_dir: Path,
        epoch: int,
        history: list[dict[str, float]],
        step: int = 0,
        partial: dict[str, float] | None = None,
    ) -> None:
        """Write the checkpoint after EPOCH epochs (and STEP more steps, whose loss sums are
        PARTIAL) under CKPT_DIR."""
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(self.device),
            "history": history,
        }
        if self.miner is not None:
            state["miner"] = self.miner.state_dict()
        if partial is not None:
            state["partial"] = partial
        checkpoint.save(ckpt_dir, epoch, self.model, state, step=step)

    def restore(self, ckpt_dir: Path) -> Resumed | None:
        """Load the newest intact checkpoint under CKPT_DIR into the model and these objects;
        None when there is none."""
        ckpt = checkpoint.latest(ckpt_dir)
        if ckpt is None:
            return None
        state = checkpoint.load(ckpt, self.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], self.device)
        mined = None
        if self.miner is not None and "miner" in state:  # the cache the next refresh reads
            self.miner.load_state_dict(state["miner"], topk=False)
            mined = state["miner"]
        history = [dict(h) for h in state["history"]]
        partial = state.get("partial") or {"total": 0.0, "count": 0}
        return Resumed(ckpt.epoch, ckpt.step, history, partial, mined)
