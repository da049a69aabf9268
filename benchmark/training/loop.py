"""The training loop: the recipe's optimizer, schedule, precision and augmentation, a
validation split scored after every epoch, per-epoch checkpoints.

With ``selection="best"`` the epoch with the best validation R@1 is kept beside the
checkpoints (see selection.py). A SIGINT/SIGTERM (see benchmark/interrupt.py) is honoured
between steps: the finished step is kept, a mid-epoch checkpoint is written and training
returns marked interrupted; ``resume`` continues from the newest checkpoint (restore.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader

from benchmark import checkpoint, distributed, faults, interrupt
from benchmark.config import RunConfig
from benchmark.data.augment import build_augmenter
from benchmark.data.base import CrossViewSplit, carve_validation
from benchmark.data.loader import EpochShuffle, EpochTagged, PairDataset, WaitClock, make_loader
from benchmark.data.transforms import InputPipeline
from benchmark.errors import TrainingError
from benchmark.mining import MiningSampler
from benchmark.model import CrossViewModel
from benchmark.protocols import StagedLoss
from benchmark.results import VAL_KEY
from benchmark.training import selection
from benchmark.training.optim import build_optimizer, build_schedule
from benchmark.training.restore import TrainingState
from benchmark.training.step import TrainStep, optimizer_step, precision_policy


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


def epoch_line(logs: dict[str, float], epochs: int, seconds: float) -> str:
    """The line printed after an epoch: loss, learning rate, validation R@1, time."""
    line = f"   epoch {int(logs['epoch'])}/{epochs}  loss {logs['loss']:.4f}  lr {logs['lr']:.3g}"
    if VAL_KEY in logs:
        line += f"  val R@1 {logs[VAL_KEY]:.2f}"
    return line + f"  {seconds:.1f} s"


def _hold_out(
    split: CrossViewSplit, cfg: RunConfig, report: TrainReport
) -> tuple[CrossViewSplit, CrossViewSplit | None]:
    """SPLIT without its validation pairs, and those pairs (None when cfg.val_fraction is 0);
    the report records the split."""
    if not cfg.val_fraction:
        return split, None
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
    return split, val


@dataclass(frozen=True)
class TrainingData:
    """The training pairs and the loader of this rank's slice of each global batch, with the
    sampler whose epoch sets the order (the miner's when hard negatives are mined)."""

    pairs: PairDataset
    loader: DataLoader
    sampler: EpochShuffle | MiningSampler
    miner: MiningSampler | None
    generator: torch.Generator  # worker seeds: a function of (seed, epoch) only
    batch: int


def training_data(
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    world: distributed.World,
    device: torch.device,
) -> TrainingData:
    """The pairs of SPLIT batched as CFG asks (shuffled or mined), sliced for this rank."""
    batch = min(cfg.batch_size, split.num_ground)
    generator = torch.Generator()
    pairs = PairDataset(split, pipeline, cfg.seed)
    miner = None
    if cfg.mining:
        miner = MiningSampler(split, batch, cfg.seed, cfg.mining_pool, cfg.mining_k)
        sampler: EpochShuffle | MiningSampler = miner
        batches: Any = miner
    else:
        sampler = EpochShuffle(split.num_ground, cfg.seed)
        batches = BatchSampler(sampler, batch, drop_last=True)
    loader = make_loader(
        pairs,
        distributed.per_rank_batch(world, batch),
        cfg.workers,
        device,
        generator=generator,
        batch_sampler=distributed.RankSlices(EpochTagged(batches, sampler), world),
    )
    return TrainingData(pairs, loader, sampler, miner, generator, batch)


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
        split, val = _hold_out(split, cfg, report)
        augment = build_augmenter(cfg.augment, pipeline.pre, split.offsets is not None, cfg.seed)
        report.augmentation = augment.describe()
        data = training_data(split, pipeline, cfg, world, device)
        net: torch.nn.Module = TrainStep(model, loss_fn, world, data.miner)
        if world.active:
            net = DistributedDataParallel(net, find_unused_parameters=True)
        steps_per_epoch = len(data.loader)
        report.workers = data.loader.num_workers
        clock = WaitClock(data.loader)
        optimizer = build_optimizer(cfg, model)
        schedule = build_schedule(cfg, optimizer, steps_per_epoch)
        scaler = policy.scaler()
        step_on = optimizer_step(cfg, optimizer, scaler, model, world.size)
        state = TrainingState(model, optimizer, schedule, scaler, data.miner, device)
        start, skip, partial, mined = 0, 0, {"total": 0.0, "count": 0}, None
        if resume and (resumed := state.restore(ckpt_dir)) is not None:
            report.history = resumed.history
            start = report.resumed_from = report.epochs_completed = resumed.epoch
            skip = report.resumed_step = resumed.step
            partial, mined = resumed.partial, resumed.mined
        elif not resume and world.is_main:
            checkpoint.clear(ckpt_dir)

        t0 = time.perf_counter()
        for epoch in range(start, cfg.epochs):
            if (signum := distributed.agree_signal(world, interrupt.requested())) is not None:
                report.interrupted = interrupt.signal_name(signum)
                break
            data.sampler.set_epoch(epoch, skip * data.batch)
            if skip and mined is not None:  # mid-epoch: this epoch's lists, not a new refresh
                data.miner.load_state_dict(mined)
            data.generator.manual_seed(cfg.seed * 1_000_003 + epoch)
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
            for step, batch in enumerate(batches_of, start=skip):
                began = time.perf_counter()
                batch = data.pairs.to_model(batch, device)  # normalised inputs on the device
                augment(batch, epoch, step)

                def loss_of(batch: dict[str, Any] = batch) -> torch.Tensor:
                    with policy.autocast():
                        return net(batch)

                loss = loss_of()
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"The loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} of "
                        f"{cfg.plugin}. Lower the learning rate (--set lr=...), enable gradient "
                        "clipping (--set grad_clip=1.0) or check the input data."
                    )
                step_on(loss, loss_of)
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
                        state.save(ckpt_dir, epoch, report.history, step + 1, partial)
                    break
            skip = 0
            if report.interrupted:
                break
            logs = {
                "epoch": epoch + 1,
                "loss": total / max(1, count),
                "lr": schedule.get_last_lr()[0],
                "pairs_seen": (epoch + 1) * steps_per_epoch * data.batch,
            }
            if val is not None:
                logs[VAL_KEY] = selection.validation_r1(model, val, pipeline, cfg, device)
            report.history.append(logs)
            report.epochs_completed = epoch + 1
            best = selection.best_epoch(report.history) if cfg.selection == "best" else None
            if world.is_main:
                if best == epoch + 1:
                    selection.save_best(ckpt_dir, best, model)
                state.save(ckpt_dir, epoch + 1, report.history)
                # once the checkpoint holds the history that chose it, other best files go
                # (also one newer than the checkpoint a run resumed from)
                selection.prune_best(ckpt_dir, best)
                print(epoch_line(logs, cfg.epochs, time.perf_counter() - started), flush=True)
            if on_epoch_end is not None and world.is_main:
                on_epoch_end(epoch + 1, logs)
        report.seconds = time.perf_counter() - t0
        if not report.interrupted:
            report.selected_epoch = report.epochs_completed
            if (
                cfg.selection == "best"
                and (best := selection.best_epoch(report.history)) is not None
            ):
                report.selected_epoch = best
                report.selected_weights = selection.best_weights(ckpt_dir, best)
        report.data_wait_seconds = clock.seconds
        if world.is_main:
            print(report.data_line(), flush=True)
        return report
