"""Measuring a model's cost, one procedure for every method and for `profile` and runs
alike: latency, throughput and peak memory, assembled with the counts into one profile.

Latency follows timm's benchmark: warm-up, a fixed number of timed iterations, CUDA
synchronisation, ``torch.inference_mode``, median reported, with the 1-minute load average
per core seen while timing (latency measured on a busy machine is not comparable).
Peak memory is the most tensor memory (weights, inputs, activations) held at once during a
forward at the throughput batch: CUDA's allocator statistics on a GPU, and on a CPU the
same quantity counted by following every tensor storage the forward creates and frees.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from benchmark.errors import BenchmarkError
from benchmark.model import CrossViewModel
from benchmark.profiling.counting import count_macs, flop_counter_name, parameter_counts

PROFILE_KEYS = (
    "plugin",
    "params_m",
    "params_ground_m",
    "params_aerial_m",
    "trainable_params_m",
    "gmacs",
    "gflops",
    "flop_counter",
    "uncounted_ops",
    "descriptor_dim",
    "input_ground",
    "input_aerial",
    "latency_ms",
    "throughput",
    "batch_size",
    "precision",
    "peak_memory_mb",
    "load_per_core",
    "device",
)
# One measuring procedure for `profile` and for runs: a full-size model takes ~0.5 s per
# pair on two CPU cores, so the CPU settings are small.
CPU_TIMING = {"batch_size": 4, "warmup": 2, "iters": 5}
CUDA_TIMING = {"batch_size": 64, "warmup": 10, "iters": 40}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_forward(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    device: torch.device,
    warmup: int,
    iters: int,
) -> float:
    """Median seconds of one forward over ITERS timed iterations after WARMUP untimed ones."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        _sync(device)
        for _ in range(iters):
            start = time.perf_counter()
            model(*inputs)
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pair(model: CrossViewModel, batch: int, device: torch.device, dtype: torch.dtype):
    pre = model.preprocess
    return (
        torch.randn(batch, 3, *pre.ground_size, device=device, dtype=dtype),
        torch.randn(batch, 3, *pre.aerial_size, device=device, dtype=dtype),
    )


class _TensorPeak(TorchDispatchMode):
    """Counts the bytes of tensor storages alive at once while active: each storage is added
    when an operator first returns it and removed when the last tensor using it is freed."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.live = self.peak = base
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key not in self.refs:
                self.refs[key] = 0
                self.sizes[key] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            self.refs[key] += 1
            weakref.finalize(tensor, self._release, key)
        return out


def _tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def cpu_peak_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Most tensor bytes held at once by MODEL's weights, INPUTS and one forward on them."""
    held = _tensor_bytes(iter([*model.parameters(), *model.buffers(), *inputs]))
    with torch.inference_mode(), _TensorPeak(held) as counter:
        model(*inputs)
    return counter.peak


def load_per_core() -> float | None:
    """The 1-minute load average divided by the number of cores (None where unknown)."""
    try:
        return round(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
    except OSError:
        return None


def device_label(device: torch.device) -> str:
    """The device with its hardware: 'cuda:0 (NVIDIA H100 ...)' or 'cpu (x86_64, 2 threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device.type} ({platform.machine()}, {torch.get_num_threads()} threads)"


def _throughput(
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
    warmup: int,
    iters: int,
) -> tuple[float, int]:
    """Pairs per second at BATCH_SIZE, halving the batch on CUDA out-of-memory."""
    while True:
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            inputs = _pair(model, batch_size, device, dtype)
            seconds = _time_forward(model, inputs, device, warmup, iters)
            return batch_size / seconds, batch_size
        except torch.OutOfMemoryError:
            if device.type != "cuda" or batch_size == 1:
                raise BenchmarkError(
                    f"Out of memory on {device} even at batch size {batch_size}; profile on a "
                    "device with more memory or choose a smaller variant (--variant tiny)."
                ) from None
            inputs = None
            batch_size //= 2
            torch.cuda.reset_peak_memory_stats(device)


def timing(device: torch.device) -> dict[str, int]:
    """Batch size, warm-up and timed iterations on DEVICE (the same for profile and runs)."""
    return dict(CUDA_TIMING if device.type == "cuda" else CPU_TIMING)


def profile_model(
    model: CrossViewModel,
    device: torch.device | str = "cpu",
    batch_size: int = CPU_TIMING["batch_size"],
    warmup: int = CPU_TIMING["warmup"],
    iters: int = CPU_TIMING["iters"],
) -> dict[str, Any]:
    """Parameters, GMACs, latency, throughput and peak memory of MODEL on DEVICE."""
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise BenchmarkError(
            f"Profiling needs batch_size >= 1, iters >= 1 and warmup >= 0 "
            f"(got {batch_size}, {iters}, {warmup})."
        )
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"Device {device} was asked for but CUDA is not available; use cpu.")
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.get_default_dtype()
    was_training = model.training
    model.to(device).eval()
    try:
        pair = _pair(model, 1, device, dtype)
        macs, uncounted = count_macs(model, pair)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        load = load_per_core()
        latency = _time_forward(model, pair, device, warmup, iters)
        throughput, used = _throughput(model, device, dtype, batch_size, warmup, iters)
        after = load_per_core()
        load = max(load, after) if load is not None and after is not None else load
        if device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        else:
            peak = round(cpu_peak_bytes(model, _pair(model, used, device, dtype)) / 2**20, 1)
    finally:
        model.to(home).train(was_training)
    pre = model.preprocess
    gmacs = macs / 1e9
    profile = {
        "plugin": None,
        **parameter_counts(model),
        "gmacs": round(gmacs, 9),  # exact: MACs are integers
        "gflops": round(2 * gmacs, 9),
        "flop_counter": flop_counter_name(),
        "uncounted_ops": uncounted,
        "descriptor_dim": int(model.descriptor_dim),
        "input_ground": list(pre.ground_size),
        "input_aerial": list(pre.aerial_size),
        "latency_ms": round(latency * 1e3, 3),
        "throughput": round(throughput, 3),
        "batch_size": used,
        "precision": str(dtype).removeprefix("torch."),
        "peak_memory_mb": peak,
        "load_per_core": load,
        "device": device_label(device),
    }
    return {key: profile[key] for key in PROFILE_KEYS}
