"""The training loop: the recipe's optimizer, schedule, precision and augmentation, a
validation split scored after every epoch, per-epoch checkpoints.

With ``selection="best"`` the epoch with the best validation R@1 is kept as
``best-epoch-E.safetensors`` beside the checkpoints (the test split is never used to
choose). A SIGINT/SIGTERM (see benchmark/interrupt.py) is honoured between steps: the
finished step is kept, a mid-epoch checkpoint is written and training returns marked
interrupted.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler

from benchmark import checkpoint, distributed, faults, interrupt
from benchmark.config import RunConfig
from benchmark.data.augment import build_augmenter
from benchmark.data.base import CrossViewSplit, carve_validation
from benchmark.data.loader import EpochShuffle, EpochTagged, PairDataset, WaitClock, make_loader
from benchmark.data.transforms import InputPipeline
from benchmark.errors import BenchmarkError, TrainingError
from benchmark.evaluate import extract
from benchmark.mining import MiningSampler
from benchmark.model import CrossViewModel
from benchmark.protocols import SemiPositiveLoss, StagedLoss
from benchmark.results import VAL_KEY
from benchmark.retrieval import search_torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


BEST = re.compile(r"best-epoch-(\d+)\.safetensors")


@dataclass
class TrainReport:
    """What training did: epochs run, wall time, per-epoch history (mean loss, learning rate,
    validation R@1), resume point, and what was applied (precision, augmentation,
    validation split, the selected epoch and its weights)."""

    epochs_completed: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    resumed_step: int = 0
    interrupted: str | None = None
    precision: str = "fp32"
    augmentation: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    selected_epoch: int | None = None
    selected_weights: Path | None = None
    workers: int = 0
    data_wait_seconds: float = 0.0  # blocked on the DataLoader for the next batch
    compute_seconds: float = 0.0  # from a batch's arrival to the end of its step

    def data_line(self) -> str:
        """One line: time spent waiting for data versus computing."""
        busy = self.data_wait_seconds + self.compute_seconds
        share = 100 * self.data_wait_seconds / busy if busy else 0.0
        return (
            f"   data: waited {self.data_wait_seconds:.1f} s for batches, computed "
            f"{self.compute_seconds:.1f} s ({share:.0f}% waiting, {self.workers} workers)"
        )


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


def validation_r1(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    device: torch.device,
) -> float:
    """R@1 (percent) of SPLIT's panoramas against SPLIT's gallery, extracted as evaluation
    does; the global RNG stream of training is left untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        bs, workers = cfg.eval_batch_size, cfg.workers
        ground = extract(model, split, "ground", pipeline, bs, workers, device)
        aerial = extract(model, split, "aerial", pipeline, bs, workers, device)
    positives = torch.as_tensor(split.positives)
    found = search_torch(ground, aerial, positives, 1, cfg.eval_memory_mb * 2**20)
    return float((found.ranks < 1).mean() * 100.0)


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch with the highest validation R@1 (the earliest on ties), None before any."""
    scored = [(h[VAL_KEY], -int(h["epoch"])) for h in history if VAL_KEY in h]
    return -max(scored)[1] if scored else None


def best_weights(ckpt_dir: Path, epoch: int) -> Path:
    """Where the weights of EPOCH are kept when it is the best one."""
    return ckpt_dir / f"best-epoch-{epoch:05d}.safetensors"


def save_best(ckpt_dir: Path, epoch: int, model: torch.nn.Module) -> None:
    """Write MODEL's weights as the best of EPOCH, atomically."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = best_weights(ckpt_dir, epoch)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        save_model(model, str(tmp))
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BenchmarkError(
            f"Could not write the best weights {final} ({exc.strerror or exc}). Free disk "
            "space or choose a --results-dir with room."
        ) from exc


def prune_best(ckpt_dir: Path, keep: int | None) -> None:
    """Delete every best-epoch file but KEEP's (all of them when KEEP is None)."""
    for path in ckpt_dir.glob("best-epoch-*.safetensors"):
        match = BEST.fullmatch(path.name)
        if match is None or int(match[1]) != keep:
            path.unlink(missing_ok=True)


def epoch_line(logs: dict[str, float], epochs: int, seconds: float) -> str:
    """The line printed after an epoch: loss, learning rate, validation R@1, time."""
    line = f"   epoch {int(logs['epoch'])}/{epochs}  loss {logs['loss']:.4f}  lr {logs['lr']:.3g}"
    if VAL_KEY in logs:
        line += f"  val R@1 {logs[VAL_KEY]:.2f}"
    return line + f"  {seconds:.1f} s"


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


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


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


def train(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    loss_fn: Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor],
    device: torch.device,
    ckpt_dir: Path,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train MODEL on SPLIT for cfg.epochs, checkpointing every epoch; resume if asked.

    Under torchrun each rank computes its slice of every global batch (see
    benchmark/distributed.py) and rank 0 writes the checkpoints.
    """
    world = distributed.current()
    model.to(device)
    with distributed.global_batchnorm(model, world):
        report = TrainReport()
        policy = precision_policy(cfg, device)
        report.precision = policy.name
        val: CrossViewSplit | None = None
        if cfg.val_fraction:
            held = split.num_ground
            split, val = carve_validation(split, cfg.val_fraction, cfg.val_seed)
            report.validation = {
                "fraction": cfg.val_fraction,
                "seed": cfg.val_seed,
                "from_train_pairs": held,
                "train_pairs": split.num_ground,
                "pairs": val.num_ground,
                "references": val.num_aerial,
                "metric": "R@1",
            }
        augment = build_augmenter(cfg.augment, pipeline.pre, split.offsets is not None, cfg.seed)
        report.augmentation = augment.describe()
        batch = min(cfg.batch_size, split.num_ground)
        local = distributed.per_rank_batch(world, batch)
        generator = torch.Generator()  # iterator seeds: a function of (seed, epoch) only
        pairs = PairDataset(split, pipeline, cfg.seed)
        miner = None
        if cfg.mining:
            miner = MiningSampler(split, batch, cfg.seed, cfg.mining_pool, cfg.mining_k)
            sampler: EpochShuffle | MiningSampler = miner
            batches: Any = miner
        else:
            sampler = EpochShuffle(split.num_ground, cfg.seed)
            batches = BatchSampler(sampler, batch, drop_last=True)
        net: torch.nn.Module = TrainStep(model, loss_fn, world, miner)
        if world.active:
            net = DistributedDataParallel(net, find_unused_parameters=True)
        loader = make_loader(
            pairs,
            local,
            cfg.workers,
            device,
            generator=generator,
            batch_sampler=distributed.RankSlices(EpochTagged(batches, sampler), world),
        )
        steps_per_epoch = len(loader)
        report.workers = loader.num_workers
        clock = WaitClock(loader)
        optimizer = build_optimizer(cfg, model)
        schedule = build_schedule(cfg, optimizer, steps_per_epoch)
        scaler = policy.scaler()
        start, skip, partial = 0, 0, {"total": 0.0, "count": 0}
        mined: dict[str, torch.Tensor] | None = None
        if resume and (ckpt := checkpoint.latest(ckpt_dir)) is not None:
            state = checkpoint.load(ckpt, model)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], device)
            report.history = [dict(h) for h in state["history"]]
            start = report.resumed_from = ckpt.epoch
            skip = report.resumed_step = ckpt.step
            partial = state.get("partial") or partial
            if miner is not None and "miner" in state:  # the cache the next refresh reads
                miner.load_state_dict(state["miner"], topk=False)
                mined = state["miner"]
            report.epochs_completed = ckpt.epoch
        elif not resume and world.is_main:
            checkpoint.clear(ckpt_dir)

        def snapshot(**extra: Any) -> dict[str, Any]:
            return {
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(device),
                "history": report.history,
                **({"miner": miner.state_dict()} if miner is not None else {}),
                **extra,
            }

        t0 = time.perf_counter()
        for epoch in range(start, cfg.epochs):
            if (signum := distributed.agree_signal(world, interrupt.requested())) is not None:
                report.interrupted = interrupt.signal_name(signum)
                break
            sampler.set_epoch(epoch, skip * batch)
            if skip and mined is not None:  # mid-epoch: this epoch's lists, not a new refresh
                miner.load_state_dict(mined)
            generator.manual_seed(cfg.seed * 1_000_003 + epoch)
            if isinstance(loss_fn, StagedLoss):  # VIGOR: triplet, then hybrid
                loss_fn.set_epoch(epoch)
            model.train()
            started = time.perf_counter()
            total, count = (float(partial["total"]), int(partial["count"])) if skip else (0.0, 0)
            bar = distributed.progress(
                clock,
                desc=f"{cfg.plugin} epoch {epoch + 1}/{cfg.epochs}",
                leave=False,
                initial=skip,
                total=steps_per_epoch,
            )
            batches_of = interrupt.abortable_iter(bar, interrupt.WAIT_S)  # a blocked read stops
            for step, data in enumerate(batches_of, start=skip):
                began = time.perf_counter()
                data = pairs.to_model(data, device)  # normalised model inputs on the device
                augment(data, epoch, step)

                def closure(data: dict[str, Any] = data) -> torch.Tensor:
                    with policy.autocast():
                        return net(data)

                # Each rank back-propagates the global loss through its own rows; DDP averages
                # the ranks' gradients, so scaling by the rank count gives the global gradient.
                loss = closure()
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} of "
                        f"{cfg.plugin}. Lower the learning rate (--set lr=...), enable gradient "
                        "clipping (--set grad_clip=1.0) or check the input data."
                    )
                if cfg.sam_rho is not None:
                    (loss * world.size).backward()
                    optimizer.first_step(zero_grad=True)
                    (closure() * world.size).backward()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.second_step(zero_grad=True)
                else:
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss * world.size).backward()
                    if cfg.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                schedule.step()
                total += loss.item()
                count += 1
                report.compute_seconds += time.perf_counter() - began
                bar.set_postfix(loss=f"{total / count:.4f}")
                faults.point("train-step")
                signum = distributed.agree_signal(world, interrupt.requested())
                if signum is not None and step + 1 < steps_per_epoch:
                    report.interrupted = interrupt.signal_name(signum)
                    partial = {"total": total, "count": count}
                    if world.is_main:
                        state = snapshot(partial=partial)
                        checkpoint.save(ckpt_dir, epoch, model, state, step=step + 1)
                    break
            skip = 0
            if report.interrupted:
                break
            logs = {
                "epoch": epoch + 1,
                "loss": total / max(1, count),
                "lr": schedule.get_last_lr()[0],
                "pairs_seen": (epoch + 1) * steps_per_epoch * batch,
            }
            if val is not None:
                logs[VAL_KEY] = validation_r1(model, val, pipeline, cfg, device)
            report.history.append(logs)
            report.epochs_completed = epoch + 1
            best = best_epoch(report.history) if cfg.selection == "best" else None
            if world.is_main:
                if best == epoch + 1:
                    save_best(ckpt_dir, best, model)
                checkpoint.save(ckpt_dir, epoch + 1, model, snapshot())
                # once the checkpoint holds the history that chose it, other best files go
                # (also one newer than the checkpoint a run resumed from)
                prune_best(ckpt_dir, best)
                print(epoch_line(logs, cfg.epochs, time.perf_counter() - started), flush=True)
            if on_epoch_end is not None and world.is_main:
                on_epoch_end(epoch + 1, logs)
        report.seconds = time.perf_counter() - t0
        if not report.interrupted:
            report.selected_epoch = report.epochs_completed
            if cfg.selection == "best" and (best := best_epoch(report.history)) is not None:
                report.selected_epoch = best
                report.selected_weights = best_weights(ckpt_dir, best)
        report.data_wait_seconds = clock.seconds
        if world.is_main:
            print(report.data_line(), flush=True)
        return report
