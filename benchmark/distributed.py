"""Multi-process runs under torchrun: the process group, rank slices of each global batch,
gathers, and BatchNorm statistics over the global batch.

``torchrun --nproc_per_node=N -m benchmark run ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; every rank then runs the same jobs. A step's global batch (the configured
batch size) is split into equal rank slices, descriptors are gathered so the loss sees the
whole batch, BatchNorm normalises with global-batch statistics, and gradients are averaged by
DistributedDataParallel: a run matches a single process with the same global batch up to
float rounding. Evaluation extracts a contiguous shard per rank and gathers it; rank 0 scores,
profiles and writes the result. Without torchrun every helper here is the identity.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from benchmark.errors import BenchmarkError

IMAGE_KEYS = frozenset({"ground", "aerial", "semi"})  # batch entries gathered as outputs


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a launch (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on the rank that scores, prints and writes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when more than one process takes part."""
        return self.size > 1

    def describe(self, global_batch: int) -> dict[str, Any]:
        """What a result records about the launch."""
        return {
            "world_size": self.size,
            "backend": self.backend,
            "per_rank_batch": global_batch // self.size,
            "global_batch": global_batch,
        }


def launched() -> bool:
    """True when torchrun (or another launcher) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> World:
    """The World of this process: from the process group when one is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        dist.get_rank(),
        dist.get_world_size(),
        int(os.environ.get("LOCAL_RANK", "0")),
        str(dist.get_backend()),
    )


def init(device: str) -> World:
    """Join the launch's process group (nccl for CUDA devices, gloo for CPU) when launched
    by torchrun."""
    if not launched() or dist.is_initialized():
        return current()
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    minutes = float(os.environ.get("CVGL_BENCHMARK_DIST_TIMEOUT_MIN", "30"))
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=minutes))
    except (RuntimeError, ValueError) as exc:
        raise BenchmarkError(
            f"Could not join the torchrun process group ({exc}). Check --rdzv-endpoint / "
            "MASTER_ADDR and MASTER_PORT, and that every node runs the same command."
        ) from None
    return current()


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar, shown by rank 0 only and only on a terminal (a redirected
    stderr gets no bar frames; training prints one line per epoch instead)."""
    return tqdm(iterable, disable=not (current().is_main and sys.stderr.isatty()), **kwargs)


def shutdown() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (no-op in a single process)."""
    if world.active:
        dist.barrier()


def agree_signal(world: World, signum: int | None) -> int | None:
    """A stop signal any rank received, so every rank stops at the same step."""
    if not world.active:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.long, device=_comm_device(world))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def _comm_device(world: World) -> torch.device:
    if world.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def per_rank_batch(world: World, global_batch: int) -> int:
    """The slice of each global batch one rank computes; the batch must split evenly."""
    if global_batch % world.size:
        low = global_batch - global_batch % world.size
        raise BenchmarkError(
            f"The batch size {global_batch} is the global batch and must divide evenly over the "
            f"{world.size} processes; use --batch-size {low or world.size} or "
            f"{low + world.size}."
        )
    return global_batch // world.size


class RankSlices:
    """Yields this rank's slice of every global batch that BATCHES yields (batch samplers
    keep their set_epoch and length)."""

    def __init__(self, batches: Any, world: World) -> None:
        self.batches = batches
        self.world = world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            step = len(batch) // self.world.size
            yield list(batch)[self.world.rank * step : (self.world.rank + 1) * step]

    def __len__(self) -> int:
        return len(self.batches)


def shard(n: int, world: World) -> range:
    """The contiguous part of range(N) this rank extracts (sizes differ by at most one)."""
    per, extra = divmod(n, world.size)
    start = world.rank * per + min(world.rank, extra)
    return range(start, start + per + (world.rank < extra))


def gather_shards(local: torch.Tensor, n: int, world: World) -> torch.Tensor:
    """All N rows from every rank's shard(N) rows, in index order, on every rank."""
    if not world.active:
        return local
    longest = -(-n // world.size)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded.contiguous())
    sizes = [len(shard(n, World(r, world.size))) for r in range(world.size)]
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def gather_batch(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The global batch of a per-rank TENSOR; gradients flow back into this rank's rows only
    (other ranks' rows are constants here, and their own copies carry their gradients)."""
    if not world.active:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[world.rank] = tensor
    return torch.cat(parts)


def gather_outputs(outputs: Mapping[str, Any], world: World) -> dict[str, Any]:
    """Every batch-first tensor of a model's output dict as its global batch."""
    return {k: gather_batch(v, world) if _batched(v) else v for k, v in outputs.items()}


def gather_data(data: Mapping[str, Any], world: World) -> dict[str, Any]:
    """The non-image entries of a data batch (indices, offsets, ...) as their global batch."""
    return {
        k: gather_batch(v.to(_comm_device(world)), world).to(v.device)
        if k not in IMAGE_KEYS and _batched(v)
        else v
        for k, v in data.items()
    }


def _batched(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0


class SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over ranks; the gradient of each rank's input is the sum of the ranks'
    output gradients (each rank's loss depends on the sum through its own rows)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch across ranks
    (CPU and CUDA; torch.nn.SyncBatchNorm is CUDA-only). Same parameters and buffers as the
    BatchNorm it replaces, so checkpoints do not change."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise X by global-batch mean and variance in training, running stats otherwise."""
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        # two passes in float32 (as a single process's BatchNorm): the global mean, then the
        # global mean squared deviation; under AMP half-precision sums would overflow
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        sums = SumOverRanks.apply(torch.cat([xf.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centred = xf - mean.view(shape)
        var = SumOverRanks.apply((centred * centred).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _swap_batchnorm(module: nn.Module, make: Any) -> nn.Module:
    for name, child in module.named_children():
        replaced = make(child)
        if replaced is not None:
            setattr(module, name, replaced)
        else:
            _swap_batchnorm(child, make)
    return module


def _rebuild(bn: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    new = cls.__new__(cls)
    new.__dict__.update(bn.__dict__)  # the same Parameter and buffer objects, shared
    return new


def _sync_batchnorm(model: nn.Module) -> nn.Module:
    """Make every BatchNorm of MODEL use global-batch statistics (in place; reversible)."""

    def make(m: nn.Module) -> nn.Module | None:
        if isinstance(m, _BatchNorm) and not isinstance(m, GlobalBatchNorm):
            new = _rebuild(m, GlobalBatchNorm)
            new._local_class = type(m)
            return new
        return None

    return _swap_batchnorm(model, make)


@contextmanager
def global_batchnorm(model: nn.Module, world: World) -> Iterator[None]:
    """Within the block, MODEL's BatchNorm uses global-batch statistics (nothing changes in
    a single process)."""
    if not world.active:
        yield
        return
    _sync_batchnorm(model)
    try:
        yield
    finally:
        _unsync_batchnorm(model)


def _unsync_batchnorm(model: nn.Module) -> nn.Module:
    """Undo _sync_batchnorm: every BatchNorm is its original class again."""

    def make(m: nn.Module) -> nn.Module | None:
        if isinstance(m, GlobalBatchNorm):
            return _rebuild(m, m.__dict__.pop("_local_class"))
        return None

    return _swap_batchnorm(model, make)


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (generating and caching a synthetic world, say), then the
    other ranks; a failure on rank 0 still releases them."""
    if not world.is_main:
        barrier(world)
    try:
        yield
    finally:
        if world.is_main:
            barrier(world)
