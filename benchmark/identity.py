"""A run's identity: a readable name plus a short hash of everything that can change its
outcome, so two runs that could measure different things never share a result, a
checkpoint or a resume state.

The hashed settings are every RunConfig field whose role is not ``infrastructure`` (see
benchmark/settings.py), with the test split and data root resolved, the model options as
built (variant and overrides merged, a pretrained weights file named by its content, not its
path), and the content of input files (``--weights``, ``--descriptors``). Checkpoints are
keyed by the training identity: the same without the ``evaluation`` fields and input files,
so every protocol evaluates one trained model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.config import ROLES, RunConfig
from benchmark.io import sha256_file
from benchmark.settings import NOT_OUTCOME
from benchmark.specs import ModelOptions

HASH_LENGTH = 8


def readable_name(
    dataset: str, split: str, plugin: str, variant: str, regime: str, seed: int, protocol: str
) -> str:
    """The part of a run's name people read: data, method, regime, seed, protocol."""
    track = "" if protocol == "aligned" else "-" + protocol.replace("=", "")
    return f"{dataset}-{split}__{plugin}-{variant}-{regime}-seed{seed}{track}"


def digest(settings: Mapping[str, Any]) -> str:
    """The short hash of SETTINGS (canonical JSON, keys sorted)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


@dataclass(frozen=True)
class RunIdentity:
    """A readable NAME and the SETTINGS whose hash completes it."""

    name: str
    settings: dict[str, Any]

    @property
    def digest(self) -> str:
        """The short hash of the settings."""
        return digest(self.settings)

    @property
    def stem(self) -> str:
        """File name stem shared by the result, its companions and its lock."""
        return f"{self.name}-{self.digest}"


def file_digest(path: str | Path) -> str:
    """sha256 of the file at PATH (OSError when it cannot be read); read once per version."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


@cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _weights_identity(option: object) -> object:
    """A ``pretrained`` option as identity: a file by its content (sha256), else as given."""
    if not isinstance(option, str):
        return option
    try:
        return f"file sha256:{file_digest(option)}"
    except OSError:
        return option  # a missing file is refused before any work


def _settings(run: RunConfig, options: ModelOptions, split: str, roles: set[str]) -> dict[str, Any]:
    config = run.model_dump(mode="json")
    out = {name: config[name] for name, role in ROLES.items() if role in roles}
    out["split"] = split
    if run.data_root is not None:
        out["data_root"] = str(Path(run.data_root).expanduser().resolve())
    out["model"] = options.model_dump(mode="json")
    out["model"]["pretrained"] = _weights_identity(options.pretrained)
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def run_identity(
    run: RunConfig,
    options: ModelOptions,
    split: str,
    inputs: Mapping[str, str] | None = None,
) -> RunIdentity:
    """The identity of RUN's result: INPUTS maps input files ('weights', 'descriptors') to
    their content digests."""
    settings = _settings(run, options, split, set(ROLES.values()) - NOT_OUTCOME)
    settings["inputs"] = dict(sorted((inputs or {}).items()))
    name = readable_name(
        run.dataset, split, run.plugin, run.variant, run.regime, run.seed, run.protocol
    )
    return RunIdentity(name, settings)


def training_identity(run: RunConfig, options: ModelOptions, split: str) -> RunIdentity:
    """The identity of RUN's training (its checkpoints): evaluation settings left out."""
    settings = _settings(run, options, split, set(ROLES.values()) - NOT_OUTCOME - {"evaluation"})
    name = readable_name(
        run.dataset, split, run.plugin, run.variant, run.regime, run.seed, "aligned"
    )
    return RunIdentity(name, settings)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        for key in value:
            _flatten(f"{prefix}{key}.", value[key], out)
    else:
        out[prefix.rstrip(".")] = value
    return out


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """'key: THEIRS there, OURS here' for every setting that differs (dotted keys)."""
    a, b = _flatten("", ours, {}), _flatten("", theirs, {})

    def show(values: dict[str, Any], key: str) -> str:
        return repr(values[key]) if key in values else "unset"

    return [
        f"{key}: {show(b, key)} there, {show(a, key)} here"
        for key in sorted(set(a) | set(b))
        if show(a, key) != show(b, key)
    ]
