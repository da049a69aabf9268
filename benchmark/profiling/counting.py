"""Counting a model's cost, the same way for every method: parameters and MACs.

MACs are multiply-accumulates counted by fvcore from a traced forward of one ground+aerial
pair at the model's Preprocess input sizes; ``gflops = 2 * gmacs``. fvcore counts
convolutions, linear layers, matmuls and norms; this module adds handlers for
scaled-dot-product attention, einsum (all forms), broadcast matmuls and baddbmm, and
ignores a few more shape-only operators. Every other operator fvcore meets is reported in
``uncounted_ops`` (most are element-wise: activations, pooling, additions) rather than
dropped silently. Parameters are counted once in total (a module both branches share
included) and per branch.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.model import CrossViewModel
from benchmark.specs import ModelOptions, ModelSpec


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
