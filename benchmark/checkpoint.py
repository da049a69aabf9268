"""Per-epoch checkpoints: weights in safetensors, training state beside them, published
atomically (a directory is renamed into place only when complete) and verified by checksum.

A clean stop (SIGINT/SIGTERM) also writes a mid-epoch checkpoint, ``epoch-E-step-S``: E
epochs and S steps of the next one done; names sort in training order.

Test hook: ``CVGL_BENCHMARK_FAULT=checkpoint-write:N`` kills the process while the N-th
checkpoint is half written (weights on disk, no manifest), ``checkpoint-write:N:enospc``
fails it as a full disk would; see benchmark/faults.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from benchmark import faults
from benchmark.errors import BenchmarkError

KEEP = 2
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Checkpoint:
    """A complete, verified checkpoint directory."""

    path: Path
    epoch: int
    step: int = 0

    @property
    def weights(self) -> Path:
        """The safetensors weights file."""
        return self.path / "model.safetensors"


def save(
    root: Path, epoch: int, model: nn.Module, state: dict[str, Any], step: int = 0
) -> Checkpoint:
    """Write the checkpoint after EPOCH epochs (and STEP more steps) under ROOT; keep KEEP."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:05d}" + (f"-step-{step:06d}" if step else "")
    final = root / name
    tmp = root / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        faults.point("checkpoint-write")
        torch.save(state, tmp / "state.pt")
        files = {f: _sha256(tmp / f) for f in ("model.safetensors", "state.pt")}
        with (tmp / MANIFEST).open("w") as fh:
            json.dump({"epoch": epoch, "step": step, "sha256": files}, fh)
        for f in (*files, MANIFEST):
            with (tmp / f).open("rb") as fh:
                os.fsync(fh.fileno())
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchmarkError(
            f"Could not write the checkpoint {final} ({exc.strerror or exc}). Free disk space "
            "or choose a --results-dir with room; --resume continues from the last complete "
            "checkpoint."
        ) from exc
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in sorted(root.glob("epoch-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(final, epoch, step)


def verify(path: Path) -> Checkpoint | None:
    """The checkpoint at PATH if its manifest and checksums are intact, else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for name, digest in manifest["sha256"].items():
            if _sha256(path / name) != digest:
                return None
        return Checkpoint(path, int(manifest["epoch"]), int(manifest.get("step", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest(root: Path) -> Checkpoint | None:
    """The newest intact checkpoint under ROOT (damaged or partial ones are skipped)."""
    if not root.is_dir():
        return None
    for path in sorted(root.glob("epoch-*"), reverse=True):
        ckpt = verify(path)
        if ckpt is not None:
            return ckpt
    return None


def load(ckpt: Checkpoint, model: nn.Module) -> dict[str, Any]:
    """Load weights into MODEL and return the training state (weights_only unpickling)."""
    load_model(model, str(ckpt.weights))
    return torch.load(ckpt.path / "state.pt", map_location="cpu", weights_only=True)


def clear(root: Path) -> None:
    """Remove all checkpoints under ROOT (a fresh, non-resumed run)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root)
