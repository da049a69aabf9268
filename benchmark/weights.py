"""Loading pretrained weights safely: timm's hub when reachable, or a local file."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import BenchmarkError

HUB_HOST = ("huggingface.co", 443)
_probing = False


class WeightsRequested(BaseException):
    """Raised instead of loading pretrained weights while probe_weights() is active."""


@contextlib.contextmanager
def probe_weights() -> Iterator[None]:
    """Within this block a request for pretrained weights raises WeightsRequested instead of
    loading them: a build that asks for none (an option its variant ignores) shows cheaply."""
    global _probing
    _probing, before = True, _probing
    try:
        yield
    finally:
        _probing = before


def _requested(source: str) -> None:
    if _probing:
        raise WeightsRequested(source)


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the model hub answers within TIMEOUT seconds and offline mode is off."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def timm_pretrained(name: str, **kwargs: object) -> nn.Module:
    """Create timm model NAME with ImageNet weights, failing fast and clearly when offline."""
    import timm

    _requested(f"timm:{name}")
    online = hub_reachable()
    previous = os.environ.get("HF_HUB_OFFLINE")
    if not online:
        os.environ["HF_HUB_OFFLINE"] = "1"  # use the local cache only; never hang on the network
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:
        raise BenchmarkError(
            f"Could not load ImageNet weights for timm model {name!r} "
            f"({'hub unreachable and not in the local cache' if not online else exc}). "
            "Download them on a connected machine and pass the file with "
            "--set model.pretrained=/path/to/weights.safetensors, or train from scratch "
            "with --set model.pretrained=false."
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file: safetensors, or a torch checkpoint with weights_only=True."""
    _requested(str(path))
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"Weights file {str(path)!r} does not exist. Check the path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise BenchmarkError(
                f"Weights file {str(path)!r} is not a readable safetensors file ({exc})."
            ) from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchmarkError(
            f"Weights file {str(path)!r} is neither safetensors nor a torch checkpoint that "
            "loads with weights_only=True (arbitrary pickles are never loaded). Convert it to "
            f"safetensors. Detail: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchmarkError(f"Weights file {str(path)!r} does not hold a tensor state dict.")
    return obj


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load STATE into MODULE strictly, summarising missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:

        def few(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
        raise BenchmarkError(
            f"Weights {source!r} do not match the model: " + "; ".join(parts) + ". "
            "Check that the file was saved from the same plugin, variant and input size."
        )
    module.load_state_dict(state)
