"""Per-epoch checkpoints: weights in safetensors, training state beside them, published
atomically (a directory is renamed into place only when complete) and verified by checksum.

A clean stop (SIGINT/SIGTERM) also writes a mid-epoch checkpoint, ``epoch-E-step-S``: E
epochs and S steps of the next one done; names sort in training order. The folder is named
by the run's training identity and holds it in ``identity.json`` (see benchmark/identity.py).

A checkpoint that cannot be written (a full disk: an OSError, or torch's and safetensors'
own error types) is removed, and the error names the newest complete one.

Test hook: ``CVGL_BENCHMARK_FAULT=checkpoint-write:N`` kills the process while the N-th
checkpoint is half written (weights on disk, no manifest), ``checkpoint-write:N:enospc``
fails it as a full disk would; see benchmark/faults.py.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from benchmark import faults
from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write, sha256_file

KEEP = 2
MANIFEST = "manifest.json"
IDENTITY = "identity.json"
# what torch.save and safetensors raise when a write fails (a full disk among others)
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


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


def write_failure(root: Path, final: Path, exc: BaseException) -> BenchmarkError:
    """The error of a checkpoint file FINAL under ROOT that could not be written: why, the
    free space, and the newest complete checkpoint a --resume would continue from."""
    reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {_first_line(exc)}"
    last = latest(root)
    where = (
        f"the newest complete checkpoint is {last.path}, which --resume continues from"
        if last is not None
        else "no earlier checkpoint of this run exists"
    )
    return BenchmarkError(
        f"Could not write the checkpoint {final} ({reason}; {_free_mib(root)} MiB free "
        f"there); the partial one was removed and {where}. Free disk space or choose a "
        "--results-dir with room."
    )


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
        files = {f: sha256_file(tmp / f) for f in ("model.safetensors", "state.pt")}
        with (tmp / MANIFEST).open("w") as fh:
            json.dump({"epoch": epoch, "step": step, "sha256": files}, fh)
        for f in (*files, MANIFEST):
            with (tmp / f).open("rb") as fh:
                os.fsync(fh.fileno())
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, WRITE_ERRORS):
            raise
        raise write_failure(root, final, exc) from exc
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
            if sha256_file(path / name) != digest:
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
    """Remove all checkpoints under ROOT, complete or partial (a fresh, non-resumed run)."""
    for path in [*root.glob("epoch-*"), *root.glob(".epoch-*")]:
        shutil.rmtree(path, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _free_mib(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free >> 20
    except OSError:
        return 0


def write_identity(root: Path, settings: dict[str, Any]) -> None:
    """Record under ROOT the training settings its checkpoints belong to."""
    try:
        with atomic_write(root / IDENTITY) as fh:
            json.dump(settings, fh, indent=2, sort_keys=True)
    except OSError as exc:
        raise BenchmarkError(
            f"Could not write {root / IDENTITY} ({exc.strerror or exc}). Free disk space or "
            "choose a --results-dir with room."
        ) from exc


def read_identity(root: Path) -> dict[str, Any] | None:
    """The training settings recorded under ROOT, or None (absent or unreadable)."""
    try:
        data = json.loads((root / IDENTITY).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
