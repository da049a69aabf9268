"""Saved test descriptors: re-evaluate (other metrics or retrieval settings) without the model.

A run that refined positions within the top-1 tile (VIGOR's offsets) also saves each
query's top-1 tile and the offset the model predicted from it, so re-evaluation applies
the same refinement (see benchmark/refine.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write

MATCHED_KEYS = (
    "plugin",
    "variant",
    "regime",
    "seed",
    "dataset",
    "split",
    "protocol",
    "protocol_seed",
    "limit",
)


VIEWS = {"ground", "aerial"}
REFINEMENT = {"top1", "offset"}


@dataclass
class Descriptors:
    """Ground and aerial descriptors of one test split and what produced them; ``top1`` and
    ``offset`` are the refinement the run applied (None when it applied none)."""

    ground: torch.Tensor
    aerial: torch.Tensor
    meta: dict[str, Any]
    top1: np.ndarray | None = None
    offset: np.ndarray | None = None


def save_descriptors(
    path: str | Path,
    ground: torch.Tensor,
    aerial: torch.Tensor,
    meta: dict[str, Any],
    refined: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write both views' descriptors and META (JSON) to one safetensors file, atomically;
    REFINED = (top-1 tile per query, metres the model placed it from that tile's centre)
    when the run refined positions, recorded in META as ``offset_refinement``."""
    tensors = {
        "ground": ground.float().contiguous().cpu(),
        "aerial": aerial.float().contiguous().cpu(),
    }
    if refined is not None:
        tensors["top1"] = torch.as_tensor(np.ascontiguousarray(refined[0], dtype=np.int64))
        tensors["offset"] = torch.as_tensor(np.ascontiguousarray(refined[1], dtype=np.float64))
    meta = {**meta, "offset_refinement": refined is not None}
    data = save(tensors, metadata={"benchmark": json.dumps(meta, sort_keys=True)})
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def load_descriptors(path: str | Path) -> Descriptors:
    """Read a file written by save_descriptors; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Descriptor file {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("benchmark", "null"))
            keys = set(fh.keys())
            if not isinstance(meta, dict) or keys not in (VIEWS, VIEWS | REFINEMENT):
                raise BenchmarkError(
                    f"{str(path)!r} is a safetensors file but not one of saved descriptors; "
                    "write one with `run ... --save-descriptors`."
                )
            extra = [fh.get_tensor(k).numpy() if k in keys else None for k in ("top1", "offset")]
            return Descriptors(fh.get_tensor("ground"), fh.get_tensor("aerial"), meta, *extra)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchmarkError(
            f"Could not read descriptors from {str(path)!r} ({exc}); it must be a .safetensors "
            "file written by `run ... --save-descriptors`."
        ) from exc


def check_compatible(
    saved: Descriptors, run: dict[str, Any], num_ground: int, num_aerial: int
) -> None:
    """Refuse descriptors of another run (model, dataset, split, protocol) or another size."""
    for key in MATCHED_KEYS:
        if saved.meta.get(key) != run.get(key):
            raise BenchmarkError(
                f"The descriptors were extracted with {key}={saved.meta.get(key)!r} but this "
                f"run has {key}={run.get(key)!r}; pass the same setting or extract again."
            )
    sizes = (len(saved.ground), len(saved.aerial))
    if sizes != (num_ground, num_aerial):
        raise BenchmarkError(
            f"The descriptors hold {sizes[0]} ground and {sizes[1]} aerial images but the test "
            f"split has {num_ground} and {num_aerial}; the dataset changed since they were saved."
        )


def descriptor_meta(config: dict[str, Any], preprocessing: dict[str, Any]) -> dict[str, Any]:
    """What save_descriptors records: the run's identity, the settings checked on reload,
    and the preprocessing the images went through."""
    return {**{k: config.get(k) for k in MATCHED_KEYS}, "preprocessing": preprocessing}
