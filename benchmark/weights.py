"""Pretrained and trained weights: timm's hub when reachable, or local files (safetensors,
torch checkpoints read with ``weights_only=True``, Caffe-converted ``.npy`` read by a
restricted unpickler). Nothing here ever unpickles arbitrary objects."""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.io import sha256_file

HUB_HOST = ("huggingface.co", 443)
FROM_SCRATCH = "from scratch"
WRAPPER_KEYS = ("state_dict", "model", "module")  # where training scripts nest a state dict
_DEFERRED = [False]  # True while a model is built for a checkpoint that replaces its weights


@dataclass(frozen=True)
class PretrainedWeights:
    """The pretrained weights a configuration starts from, named so a user can supply them."""

    name: str  # e.g. "ImageNet VGG16"
    timm: str | None  # timm model whose hub weights `pretrained=true` loads; None: not on the hub
    files: str  # the local files accepted by --pretrained FILE
    url: str  # where to download them


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


def timm_cached(name: str) -> bool:
    """True when timm's pretrained weights for model NAME are already in the local cache. A
    tagged name ('vgg16.tv_in1k') is looked up in the Hugging Face cache without importing
    timm (which takes seconds); an untagged one asks timm for its default weights."""
    from huggingface_hub import try_to_load_from_cache

    hub_id, url = f"timm/{name}", None
    if "." not in name:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name)
        if cfg is None:
            return False
        hub_id, url = cfg.hf_hub_id, cfg.url
    if hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(hub_id, filename), str):
                return True
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        return cached.is_file()
    return False


SCRATCH_HINT = (
    "or train from scratch with --set model.pretrained=false (the result is then marked "
    "'from scratch')"
)


def _not_on_hub(plugin: str, need: PretrainedWeights) -> BenchmarkError:
    return BenchmarkError(
        f"{plugin} starts from {need.name}, which timm's hub does not hold. Download them "
        f"({need.url}) and pass --pretrained FILE ({need.files}), {SCRATCH_HINT}."
    )


def check_pretrained(plugin: str, option: bool | str, need: PretrainedWeights | None) -> None:
    """Before any work: make sure the pretrained weights OPTION asks for can be had, or
    raise one paragraph naming them and how to supply them. Builds no model."""
    if not option or need is None:
        return
    if option is True:
        if need.timm is None:
            raise _not_on_hub(plugin, need)
        if hub_reachable() or timm_cached(need.timm):
            return
        raise BenchmarkError(
            f"{plugin} starts from {need.name} (timm {need.timm!r}), but the model hub is "
            "unreachable and they are not in the local cache. Download them on a connected "
            f"machine ({need.url}) and pass --pretrained FILE ({need.files}), {SCRATCH_HINT}."
        )
    path = Path(option).expanduser()
    if not path.is_file():
        raise BenchmarkError(
            f"The pretrained weights file {str(path)!r} given for {plugin} does not exist. "
            f"{plugin} needs {need.name} ({need.files}; {need.url})."
        )


@contextlib.contextmanager
def checkpoint_follows() -> Iterator[None]:
    """Build models without reading pretrained weights: a checkpoint replaces them all."""
    _DEFERRED[0] = True
    try:
        yield
    finally:
        _DEFERRED[0] = False


def pretrained_state(
    option: bool | str, need: PretrainedWeights
) -> tuple[dict[str, Any], str] | None:
    """The state dict OPTION asks for and its source ('imagenet:...'), or None when the model
    starts from scratch or a checkpoint will replace every weight (``checkpoint_follows``).

    True loads NEED's timm hub weights; a path reads that file (Caffe ``.npy``, safetensors
    or a torch checkpoint, as saved: official layouts are the caller's to map).
    """
    if not option or _DEFERRED[0]:
        return None
    _requested(str(option))
    if option is True:
        if need.timm is None:
            raise _not_on_hub("This model", need)
        model = timm_pretrained(need.timm)
        hub_id = model.pretrained_cfg.get("hf_hub_id")
        return model.state_dict(), f"imagenet:{hub_id or 'timm:' + need.timm}"
    path = Path(option).expanduser()
    state = read_caffe_npy(path) if path.suffix == ".npy" else read_checkpoint(path)
    return dict(state), f"imagenet:{describe_file(path)}"


def describe_file(path: str | Path) -> str:
    """'NAME (sha256 DIGEST)': a weights file named by its content, not its location."""
    path = Path(path).expanduser()
    return f"{path.name} (sha256 {sha256_file(path)})"


def is_caffe_npy(option: bool | str) -> bool:
    """True when OPTION names a Caffe-converted ``.npy`` file (BGR input, Caffe means)."""
    return isinstance(option, str) and Path(option).suffix == ".npy"


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
            "--pretrained /path/to/weights.safetensors, or train from scratch "
            "with --set model.pretrained=false."
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def read_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """Read a weights file as saved: safetensors, or a torch checkpoint with weights_only=True
    (tensors, containers and numbers; timm's training script also stores its argparse
    settings, so ``argparse.Namespace`` is allowed as a plain attribute holder)."""
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
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchmarkError(
            f"Weights file {str(path)!r} is neither safetensors nor a torch checkpoint that "
            "loads with weights_only=True (arbitrary pickles are never loaded). Convert it to "
            f"safetensors. Detail: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise BenchmarkError(f"Weights file {str(path)!r} does not hold a dict of tensors.")
    return obj


def flat_state_dict(checkpoint: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The tensor state dict inside CHECKPOINT (unwrapping 'state_dict', 'model', 'module')."""
    obj: Any = checkpoint
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchmarkError(f"Weights file {source!r} does not hold a tensor state dict.")
    return dict(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file's tensor state dict: safetensors or a torch checkpoint."""
    _requested(str(path))
    return flat_state_dict(read_checkpoint(path), str(path))


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load the trained weights in PATH into MODEL (its ``adapt_checkpoint`` maps an official
    checkpoint layout onto its own); return the source as recorded in results."""
    source = str(path)
    adapt = getattr(model, "adapt_checkpoint", None)
    checkpoint = read_checkpoint(path)
    state = adapt(checkpoint, source) if adapt else flat_state_dict(checkpoint, source)
    load_into(model, state, source)
    return f"weights:{describe_file(path)}"


def _few(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load STATE into MODULE strictly, summarising missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [f"{k} {tuple(own[k].shape)}" for k in sorted(set(own) - set(state))]
    unexpected = [f"{k} {tuple(state[k].shape)}" for k in sorted(set(state) - set(own))]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {_few(shapes)}")
        raise BenchmarkError(
            f"Weights {source!r} do not match the model: " + "; ".join(parts) + ". "
            "Check that the file was saved from the same method, variant and input size."
        )
    module.load_state_dict(state)


def unmapped_error(source: str, unmapped: Mapping[str, torch.Tensor], layout: str) -> None:
    """Raise when an official checkpoint holds tensors the LAYOUT mapping does not place."""
    if unmapped:
        keys = [f"{k} {tuple(v.shape)}" for k, v in sorted(unmapped.items())]
        raise BenchmarkError(
            f"Weights {source!r} look like {layout} but {len(keys)} tensors have no place in "
            f"this model: {_few(keys)}. Check the variant (depth, head, input sizes)."
        )


_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's array-unpickling helper
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, tuples, strings and numbers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ARRAY_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return found


def read_caffe_npy(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Caffe-converted VGG ``.npy`` (``np.save`` of a dict: layer name -> [W, b], W in
    TF layout HWIO) as {'conv1_1/weights': W, 'conv1_1/biases': b, ...} (layouts kept).

    The file is a pickle; it is read by an unpickler that reconstructs numpy arrays and plain
    containers only, so a file carrying anything else is refused without running it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchmarkError(f"Weights file {str(path)!r} does not exist. Check the path.")
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            version = fmt.read_magic(fh)
            read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
            if version not in read_header:
                raise ValueError(f"unsupported .npy version {version}")
            _, _, dtype = read_header[version](fh)
            if not dtype.hasobject:
                raise ValueError("it holds a plain array, not a dict of layers")
            obj = _ArrayUnpickler(fh, encoding="latin1").load()
    except (ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise BenchmarkError(
            f"{str(path)!r} is not a Caffe-converted VGG .npy (a dict of layer name -> "
            f"[weights, biases]) that can be read safely: {exc}."
        ) from None
    layers = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(layers, dict):
        raise BenchmarkError(f"{str(path)!r} does not hold a dict of layers.")
    out: dict[str, torch.Tensor] = {}
    for name, value in layers.items():
        if not (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in value)
        ):
            raise BenchmarkError(
                f"{str(path)!r}: layer {name!r} is not a [weights, biases] pair of float arrays."
            )
        out[f"{name}/weights"] = torch.from_numpy(np.array(value[0], dtype=np.float32))
        out[f"{name}/biases"] = torch.from_numpy(np.array(value[1], dtype=np.float32))
    return out
