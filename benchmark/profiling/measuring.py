"""Cost of a model, measured one way for every plugin: parameters, GMACs, latency, memory.

Conventions (stated in every profile): MACs are multiply-accumulates counted by fvcore
from a traced forward of one ground+aerial pair at the model's Preprocess input sizes;
``gflops = 2 * gmacs``. fvcore counts convolutions, linear layers, matmuls and norms;
this module adds handlers for scaled-dot-product attention, einsum (all forms), broadcast
matmuls and baddbmm, and ignores a few more shape-only operators. Every other operator
fvcore meets is reported in ``uncounted_ops`` (most are element-wise: activations,
pooling, additions) rather than dropped silently.
Latency follows timm's benchmark: warm-up, a fixed number of timed iterations, CUDA
synchronisation, ``torch.inference_mode``, median reported, with the 1-minute load average
per core seen while timing (latency measured on a busy machine is not comparable).
Peak memory is the most tensor memory (weights, inputs, activations) held at once during a
forward at the throughput batch: CUDA's allocator statistics on a GPU, and on a CPU the
same quantity counted by following every tensor storage the forward creates and frees.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import sys
import textwrap
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError
from tabulate import tabulate
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from benchmark.errors import BenchmarkError
from benchmark.model import CrossViewModel
from benchmark.reported import fmt as _fmt
from benchmark.reported import reported_compute
from benchmark.specs import ModelOptions, ModelSpec

if TYPE_CHECKING:
    from benchmark.config import Resolved

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


def _shape(value: Any) -> list[int]:
    """Shape of a traced tensor value (fvcore's graph inputs)."""
    return list(value.type().sizes())


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


def _matmul_macs(a: list[int], b: list[int]) -> int:
    """MACs of torch.matmul with numpy broadcasting (1-D operands included)."""
    a = [1, *a] if len(a) == 1 else a
    b = [*b, 1] if len(b) == 1 else b
    batch = torch.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return _prod(batch) * a[-2] * a[-1] * b[-1]


def matmul_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::matmul / mm / bmm / mv / dot: batch x n x k x m with broadcasting."""
    return _matmul_macs(_shape(inputs[0]), _shape(inputs[1]))


def baddbmm_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::baddbmm / addbmm (self, batch1, batch2, ...): the bmm's MACs."""
    return _matmul_macs(_shape(inputs[1]), _shape(inputs[2]))


def sdpa_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::scaled_dot_product_attention: Q K^T plus (softmax) V, i.e. batch*L*S*(E+Ev)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    return _prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> int:
    """Multiplications of an einsum contracted pairwise along numpy's optimal path.

    A two-operand einsum costs the product of all its index sizes (one multiply per
    element of the joint index space, whether or not an index is summed); a single
    operand (transpose, reduction) costs nothing, as in fvcore's other handlers.
    """
    equation = equation.replace(" ", "")
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    free = iter(ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch not in equation)
    ell_rank = max(
        (len(s) - (len(t) - 3) for t, s in zip(terms, shapes, strict=True) if "..." in t),
        default=0,
    )
    ell = "".join(next(free) for _ in range(ell_rank))
    sizes: dict[str, int] = {}
    letters: list[str] = []
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            n = len(shape) - (len(term) - 3)
            term = term.replace("...", ell[ell_rank - n :])
        for ch, dim in zip(term, shape, strict=True):
            sizes[ch] = max(sizes.get(ch, 1), int(dim))
        letters.append(term)
    if "->" in equation:
        out = rhs.replace("...", ell)
    else:
        counts = Counter("".join(letters))
        out = ell + "".join(sorted(c for c in counts if counts[c] == 1 and c not in ell))
    if len(letters) < 2:
        return 0
    views = [np.broadcast_to(np.zeros((), np.float32), tuple(sizes[c] for c in t)) for t in letters]
    path = np.einsum_path(",".join(letters) + "->" + out, *views, optimize="optimal")[0][1:]
    operands = [set(t) for t in letters]
    macs = 0
    for step in path:
        picked = [operands[i] for i in step]
        operands = [o for i, o in enumerate(operands) if i not in step]
        joint = set().union(*picked)
        macs += _prod([sizes[c] for c in joint]) * (len(picked) - 1)
        needed = set(out).union(*operands)
        operands.append(joint & needed)
    return macs


def einsum_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::einsum (equation, [tensors], path)."""
    shapes = [_shape(v) for v in inputs[1].node().inputs()]
    return einsum_macs(inputs[0].toIValue(), shapes)


EXTRA_HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::scaled_dot_product_attention": sdpa_handle,
    "aten::einsum": einsum_handle,
    "aten::matmul": matmul_handle,
    "aten::mm": matmul_handle,
    "aten::bmm": matmul_handle,
    "aten::mv": matmul_handle,
    "aten::dot": matmul_handle,
    "aten::baddbmm": baddbmm_handle,
    "aten::addbmm": baddbmm_handle,
}

# shape and copy operators that do no arithmetic, beyond those fvcore already ignores
NO_COMPUTE_OPS = (
    "aten::reshape_as",
    "aten::expand_as",
    "aten::view_as",
    "aten::unflatten",
    "aten::movedim",
    "aten::clone",
    "aten::repeat",
    "aten::pad",
)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence fvcore's logger and the tracer's Python warnings."""
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def flop_counter_name() -> str:
    """Name and version of the MAC counter."""
    return f"fvcore {metadata.version('fvcore')}"


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, list[dict]]:
    """MACs of MODEL(*INPUTS) by fvcore with the extra handlers, and the ops it skipped."""
    with _quiet():
        from fvcore.nn import FlopCountAnalysis

        analysis = (
            FlopCountAnalysis(model, inputs)
            .set_op_handle(**EXTRA_HANDLES)
            .set_op_handle(**dict.fromkeys(NO_COMPUTE_OPS))
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        with torch.no_grad():
            total = analysis.total()
        skipped = analysis.unsupported_ops()
    uncounted = [{"op": op, "count": n} for op, n in sorted(skipped.items(), key=lambda kv: -kv[1])]
    return int(total), uncounted


def _millions(n: int) -> float:
    return round(n / 1e6, 6)


def _unique_count(params: Iterator[nn.Parameter], trainable: bool = False) -> int:
    seen: dict[int, int] = {}
    for p in params:
        if not trainable or p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def parameter_counts(model: CrossViewModel) -> dict[str, float]:
    """params_m (shared modules once), per branch (shared ones in both) and trainable."""
    branches = model.branches()
    return {
        "params_m": _millions(_unique_count(model.parameters())),
        "params_ground_m": _millions(_unique_count(branches["ground"].parameters())),
        "params_aerial_m": _millions(_unique_count(branches["aerial"].parameters())),
        "trainable_params_m": _millions(_unique_count(model.parameters(), trainable=True)),
    }


def variant_options(spec: ModelSpec, variant: str) -> ModelOptions:
    """The options of SPEC's VARIANT with pretrained weights off (cost does not need them)."""
    if variant != "paper" and variant not in spec.variants:
        raise BenchmarkError(
            f"Unknown variant {variant!r} of {spec.name!r}. "
            f"Available variants: {', '.join(sorted({'paper', *spec.variants}))}."
        )
    try:
        return spec.options(**{**spec.variants.get(variant, {}), "pretrained": False})
    except ValidationError as exc:
        raise BenchmarkError(f"Variant {variant!r} of {spec.name!r} is invalid: {exc}") from None


def count_parameters(spec: ModelSpec, options: ModelOptions | Mapping[str, Any]) -> dict[str, Any]:
    """Parameter counts of SPEC built with OPTIONS on the meta device (no memory, no weights)."""
    opts = options if isinstance(options, ModelOptions) else spec.options(**options)
    opts = opts.model_copy(update={"pretrained": False})
    with torch.device("meta"):
        model = spec.build(opts)
    return {**parameter_counts(model), "descriptor_dim": int(model.descriptor_dim)}


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


def _delta(measured: float | None, reported: Any) -> str:
    if measured is None or not isinstance(reported, int | float) or not reported:
        return "-"
    return f"{100 * (measured - reported) / reported:+.1f}%"


# The columns of the default `profile` table (fits 80 columns); --wide shows every one.
NARROW = ("plugin", "variant", "params M", "GMACs", "latency ms", "peak MB")


def _profile_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """Every cell of ROW in the wide table, by header."""
    rep = dict(row.get("reported_cost") or {})
    paper_g, is_macs, paper_cell = reported_compute(rep)
    ours = row["gmacs"] if is_macs else row["gflops"]
    computed = " (computed)" if rep.get("params_is_computed") else ""
    paper = row.get("variant", "paper") == rep.get("variant", "paper")
    paper = paper and not row.get("model_overrides")  # an ablation is not the paper's
    g, a = row["input_ground"], row["input_aerial"]
    return {
        "plugin": row.get("plugin") or "-",
        "variant": row.get("variant", "-"),
        "input g / a": f"{g[0]}x{g[1]} / {a[0]}x{a[1]}",
        "params M": _fmt(row["params_m"]),
        "paper M": _fmt(rep.get("params_m")) + computed if rep.get("params_m") else "-",
        "Δ params": _delta(row["params_m"], rep.get("params_m")) if paper else "-",
        "GMACs": _fmt(row["gmacs"]),
        "GFLOPs": _fmt(row["gflops"]),
        "paper G (unit, input)": paper_cell,
        "Δ compute": _delta(ours, paper_g) if paper else "-",
        "latency ms": _fmt(row["latency_ms"], 1),
        "pairs/s (batch)": f"{_fmt(row['throughput'], 1)} ({row['batch_size']})",
        "peak MB": _fmt(row["peak_memory_mb"], 0),
    }


def _with_delta(value: str, delta: str) -> str:
    return value if delta == "-" else f"{value} ({delta})"


def render_profile_table(rows: Sequence[Mapping[str, Any]], wide: bool = False) -> str:
    """Table of profiles: by default a plain table of the measured cost for an 80-column
    terminal, each figure with its difference from the paper's; WIDE, a markdown table that
    adds inputs, GFLOPs, the paper's figures (``reported_cost``), throughput and the
    operators fvcore did not count.

    The paper's compute figure is compared with our GMACs when the card says the paper's
    "GFLOPs" are MACs (``gflops_is_macs``), with our GFLOPs otherwise. Deltas are shown for
    the variant the card's figures describe (``variant``, default "paper") only.
    """
    cells = [_profile_cells(row) for row in rows]
    first = rows[0] if rows else {}
    conventions = (
        f"MACs counted by {first.get('flop_counter', flop_counter_name())} per ground+aerial "
        "pair at batch 1; GFLOPs = 2 x GMACs. Latency: median per pair at batch 1; "
        f"precision {first.get('precision', '-')}; device {first.get('device', '-')}."
    )
    if not wide:
        table = [
            [c[h] for h in NARROW[:2]]
            + [_with_delta(c["params M"], c["Δ params"]), _with_delta(c["GMACs"], c["Δ compute"])]
            + [c[h] for h in NARROW[4:]]
            for c in cells
        ]
        body = tabulate(table, headers=list(NARROW), tablefmt="simple", disable_numparse=True)
        notes = (
            f"{conventions} (+x%): against the paper's own figure, for the variant it "
            "measured. --wide adds inputs, GFLOPs, the paper's figures, throughput and "
            "uncounted operators."
        )
        return body + "\n\n" + textwrap.fill(notes, 80)
    notes = []
    for row in rows:
        rep = dict(row.get("reported_cost") or {})
        skipped = ", ".join(
            f"{u['op'].removeprefix('aten::')} x{u['count']}" for u in row["uncounted_ops"]
        )
        source = f"; paper source: {rep['source']}" if rep.get("source") else ""
        notes.append(f"- {row.get('plugin') or '-'}: uncounted ops: {skipped or 'none'}{source}")
    headers = list(cells[0]) if cells else []
    table = [list(c.values()) for c in cells]
    body = tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)
    footer = ["", conventions + " Throughput at the batch shown.", *notes]
    return body + "\n" + "\n".join(footer)


def profile_command(runs: Sequence[Resolved], fmt: str, wide: bool = False) -> int:
    """``python -m benchmark profile``: profile each resolved run's model (its variant, regime
    and options, pretrained weights off: cost does not need them); print json or a table
    (every column when WIDE)."""
    from benchmark.jobs import resolve_device

    if fmt not in ("json", "table"):
        raise BenchmarkError(f"Unknown format {fmt!r}; use json or table.")
    if not runs:
        raise BenchmarkError("No model plugins to profile; install one or name it with --plugins.")
    target = resolve_device(runs[0].run.device)
    rows = []
    for resolved in runs:
        spec, run = resolved.spec, resolved.run
        options = resolved.options.model_copy(update={"pretrained": False})
        print(f"profiling {spec.name} ({run.variant}) on {target} ...", file=sys.stderr, flush=True)
        row = profile_model(spec.build(options), target, **timing(target))
        row["plugin"] = spec.name
        rows.append(
            {
                **row,
                "variant": run.variant,
                "regime": run.regime,
                "model_overrides": {k: v for k, v in run.model.items() if k != "pretrained"},
                "reported_cost": dict(spec.card.reported_cost),
            }
        )
    print(json.dumps(rows, indent=2) if fmt == "json" else render_profile_table(rows, wide))
    return 0
