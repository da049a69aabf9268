"""Per-epoch checkpoints: weights in safetensors, training state beside them, published
atomically (a directory is renamed into place only when complete) and verified by checksum."""

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

    @property
    def weights(self) -> Path:
        """The safetensors weights file."""
        return self.path / "model.safetensors"


def save(root: Path, epoch: int, model: nn.Module, state: dict[str, Any]) -> Checkpoint:
    """Write epoch EPOCH's checkpoint under ROOT and keep only the newest KEEP."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{epoch:05d}"
    tmp = root / f".epoch-{epoch:05d}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(state, tmp / "state.pt")
    files = {name: _sha256(tmp / name) for name in ("model.safetensors", "state.pt")}
    with (tmp / MANIFEST).open("w") as fh:
        json.dump({"epoch": epoch, "sha256": files}, fh)
    for name in (*files, MANIFEST):
        with (tmp / name).open("rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in sorted(root.glob("epoch-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(final, epoch)


def verify(path: Path) -> Checkpoint | None:
    """The checkpoint at PATH if its manifest and checksums are intact, else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        for name, digest in manifest["sha256"].items():
            if _sha256(path / name) != digest:
                return None
        return Checkpoint(path, int(manifest["epoch"]))
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
