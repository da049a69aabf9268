"""The result of one run: a typed record written atomically as one JSON file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmark import __version__, schema
from benchmark.identity import readable_name
from benchmark.io import atomic_write
from benchmark.specs import MetricDisplay, MetricSpec

VAL_KEY = "val_R@1"  # an epoch's validation R@1 (percent) in a training history


class CardSnapshot(BaseModel):
    """What the leaderboard shows of a method's card, as the card was when the run was made."""

    model_config = ConfigDict(extra="forbid")

    title: str
    authors: str
    venue: str
    url: str
    reported: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reported_cost: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, card: Any) -> CardSnapshot:
        """The snapshot of a method's card (a ModelCard)."""
        return cls(
            title=card.title,
            authors=card.authors,
            venue=card.venue,
            url=card.url,
            reported={k: dict(v) for k, v in card.reported.items()},
            reported_cost=dict(card.reported_cost),
        )


class PluginPackage(BaseModel):
    """The installed package whose plugin provided the method: entry point, name, version."""

    model_config = ConfigDict(extra="forbid")

    entry_point: str
    package: str
    version: str

    @classmethod
    def of(cls, origin: Any) -> PluginPackage:
        """The record of a registry's plugin origin (a PluginInfo)."""
        return cls(entry_point=origin.name, package=origin.package, version=origin.version)


# A failed or interrupted attempt of a run whose `ok` result exists is written beside it
# under these suffixes instead of over it; they are not results of their own.
ATTEMPT_SUFFIXES = (".failed.json", ".interrupted.json")


class RunResult(BaseModel):
    """Everything a reader needs to trust, compare and reproduce one run."""

    plugin: str
    variant: str
    regime: str
    dataset: str
    split: str
    seed: int
    protocol: str = "aligned"
    run_id: str = Field("", description="hash of every setting that can change the outcome")
    identity: dict[str, Any] = Field(
        default_factory=dict, description="the settings run_id hashes (benchmark/identity.py)"
    )
    options_tag: str = Field("", description="files written before run_id: '-opts<hash>'")
    initialisation: str = Field(
        "", description="'from scratch', 'imagenet:<source>' or 'weights:<file>' (eval)"
    )
    status: Literal["ok", "failed", "interrupted"]
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    profile: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    dataset_info: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(
        default_factory=dict, description="companion files beside this one (ranks, descriptors)"
    )
    notes: list[str] = Field(
        default_factory=list, description="what a reader should know about how it was recorded"
    )
    env: dict[str, Any] = Field(default_factory=dict)
    harness_version: str = __version__
    git_commit: str | None = None
    started: str = ""
    finished: str = ""
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    schema_version: int = schema.SCHEMA_VERSION
    migrated_from: int | None = Field(
        None, description="the schema this file was written with, when it was migrated since"
    )
    card: CardSnapshot | None = Field(None, description="the method's card when it ran")
    plugin_package: PluginPackage | None = None
    display: list[MetricDisplay] = Field(
        default_factory=list, description="how the leaderboard shows each metric key"
    )
    parent: str | None = Field(
        None, description="the result (file stem) of the run whose weights this run evaluated"
    )

    def filename(self) -> str:
        """Stable name: the run's readable name and its identity hash."""
        return self.stem() + ".json"

    def stem(self) -> str:
        """The file name without extension, shared with its companion files."""
        if self.run_id:
            name = readable_name(
                self.dataset,
                self.split,
                self.plugin,
                self.variant,
                self.regime,
                self.seed,
                self.protocol,
            )
            return f"{name}-{self.run_id}"
        # a file written before run identities: its name ends in the options tag + protocol
        stem = f"{self.plugin}-{self.variant}-{self.regime}-seed{self.seed}{self.options_tag}"
        track = "" if self.protocol == "aligned" else "-" + self.protocol.replace("=", "")
        return f"{self.dataset}-{self.split}__{stem}{track}"


def now() -> str:
    """UTC timestamp in ISO format."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The harness's git commit, when it runs from a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str) -> dict[str, Any]:
    """Library versions and the device, so a rerun can be compared."""
    import numpy
    import PIL
    import safetensors
    import timm
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "safetensors": safetensors.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }
    try:
        import faiss

        env["faiss"] = faiss.__version__
    except ImportError:
        env["faiss"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    return env


def displays(specs: list[MetricSpec], metrics: dict[str, Any]) -> list[MetricDisplay]:
    """The display declarations of SPECS for the keys present in METRICS."""
    return [d for spec in specs for d in spec.display if d.key in metrics]


def dump(result: RunResult, path: Path) -> None:
    """Write RESULT atomically to PATH (sorted keys, indented)."""
    with atomic_write(path, "w") as fh:
        json.dump(result.model_dump(mode="json"), fh, indent=2, sort_keys=True)
        fh.write("\n")


def holds_ok(path: Path) -> bool:
    """Whether PATH is a result file with status ok."""
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def write(result: RunResult, results_dir: Path) -> Path:
    """Write RESULT atomically under RESULTS_DIR and return its path. A failed or interrupted
    attempt never replaces an `ok` result of the same run: it goes beside it
    (``<stem>.failed.json``); an `ok` result removes such leftovers."""
    folder = Path(results_dir)
    path = folder / result.filename()
    if result.status != "ok" and holds_ok(path):
        path = folder / f"{result.stem()}.{result.status}.json"
    dump(result, path)
    if result.status == "ok":
        for suffix in ATTEMPT_SUFFIXES:
            (folder / f"{result.stem()}{suffix}").unlink(missing_ok=True)
    return path


def load(path: Path) -> RunResult:
    """The result file at PATH, an older schema migrated; ValueError when it is not one."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return RunResult.model_validate(schema.migrate(data))


def read_all(results_dir: Path) -> tuple[dict[Path, RunResult], list[str]]:
    """Every valid result under RESULTS_DIR by path, and a warning for each unreadable file."""
    found, warnings = {}, []
    for path in sorted(Path(results_dir).rglob("*.json")):
        if "checkpoints" in path.relative_to(results_dir).parts:
            continue  # checkpoint manifests live beside the results, they are not results
        if path.name.endswith(ATTEMPT_SUFFIXES):
            continue  # a failed attempt kept beside the ok result of the same run
        try:
            found[path] = load(path)
        except (OSError, ValueError) as exc:
            warnings.append(f"skipped {path}: not a valid result file ({str(exc).splitlines()[0]})")
    return found, warnings


def producer_of(weights: Path, results_dir: Path) -> str | None:
    """The result in RESULTS_DIR (its file stem) whose measured model WEIGHTS hold (its
    selected epoch's weights, or its final checkpoint), i.e. the run whose trained model an
    evaluation of WEIGHTS scores; None for other weights."""
    weights = Path(weights).resolve()
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            training = load(path).training
        except (OSError, ValueError):
            continue
        selected, checkpoint = training.get("selected_weights"), training.get("checkpoint")
        if isinstance(selected, str) and selected and Path(selected).resolve() == weights:
            return path.stem
        if (
            isinstance(checkpoint, str)
            and checkpoint
            and Path(checkpoint).resolve() == weights.parent
        ):
            return path.stem
    return None
