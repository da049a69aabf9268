"""Run configuration: defaults < paper recipe < regime < config file < command line."""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import BenchmarkError
from benchmark.specs import ModelOptions, ModelSpec

RECIPE_KEYS = (
    "optimizer",
    "lr",
    "weight_decay",
    "adam_eps",
    "batch_size",
    "epochs",
    "schedule",
    "warmup_steps",
    "grad_clip",
    "loss",
    "loss_options",
    "sam_rho",
    "mining",
)

# The documented quick regime (CPU): tiny variants trained from scratch for a few minutes. The
# papers' learning rates are tuned for ImageNet-initialised backbones, so it uses AdamW.
QUICK_REGIME: dict[str, Any] = {
    "variant": "tiny",
    "epochs": 12,
    "batch_size": 32,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "adam_eps": 1e-8,
    "schedule": "cosine",
    "warmup_steps": 0,
    "sam_rho": None,
}


class RunConfig(BaseModel):
    """Everything one (plugin, dataset, split) run depends on; recorded in its result."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    plugin: str
    variant: str = "paper"
    regime: Literal["quick", "paper"] = Field(
        "paper", description="paper = the paper recipe; quick = the documented CPU regime"
    )
    dataset: str = "synthetic"
    data_root: Path | None = None
    split: str | None = None
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict, description="model option overrides")
    epochs: int = Field(10, ge=0, le=100_000)
    batch_size: int = Field(
        32,
        ge=2,
        le=65_536,
        description="global batch over all torchrun processes; in-batch negatives need >= 2",
    )
    eval_batch_size: int = Field(64, ge=1, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=10)
    adam_eps: float = Field(1e-8, gt=0, le=1, description="Adam/AdamW epsilon")
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    loss: str = "soft-margin-triplet"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    sam_rho: float | None = Field(None, gt=0, description="ASAM radius; None = plain optimizer")
    mining: bool = Field(False, description="global hard-negative mining batches (VIGOR)")
    mining_pool: int = Field(40_000, ge=1, description="tiles per mining pool (capped at dataset)")
    mining_k: int = Field(100, ge=1, description="most similar pool tiles kept per panorama")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    seed: int = Field(0, ge=0)
    deterministic: bool = True
    results_dir: Path = Path("results")
    workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = Field(
        0, description="DataLoader workers per process, or auto (from the cores and the device)"
    )
    limit: int | None = Field(None, ge=2, description="cap train and test pairs (smoke runs)")
    retrieval: Literal["auto", "faiss", "torch"] = "auto"
    topk: int = Field(10, ge=1, le=10_000, description="top-k references stored per query")
    eval_memory_mb: int = Field(
        512, ge=1, le=2**24, description="bound on retrieval's working memory (query chunks)"
    )
    save_descriptors: bool = Field(False, description="keep test descriptors beside the result")
    protocol: str = Field(
        "aligned",
        pattern=r"^(aligned|unknown-orientation|fov=\d+)$",
        description="evaluation protocol: aligned, unknown-orientation or fov=N (degrees)",
    )
    protocol_seed: int = Field(0, ge=0, description="seed of the protocol's random azimuths")
    profile: bool = Field(True, description="measure params/GMACs/latency/memory after the run")
    metrics: list[str] | None = Field(None, description="metric names to compute (default: all)")

    @field_validator("protocol")
    @classmethod
    def _field_of_view_in_range(cls, value: str) -> str:
        if value.startswith("fov=") and not 0 < int(value[4:]) <= 360:
            raise ValueError("a field of view is 1 to 360 degrees, e.g. fov=90")
        return value


def parse_value(text: str) -> Any:
    """Parse a --set value: JSON first (numbers, lists, true/false/null), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.strip().lower()
        if low in ("true", "false", "none", "null"):
            return {"true": True, "false": False}.get(low)
        return text


def parse_sets(items: list[str]) -> dict[str, Any]:
    """Turn ['a=1', 'model.head=gap'] into a nested dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise BenchmarkError(f"--set expects KEY=VALUE, got {item!r} (example: --set lr=1e-4).")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_value(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file; syntax errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Config file {str(path)!r} does not exist.")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchmarkError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BenchmarkError(
            f"Config file {str(path)!r} is not valid YAML{where}: {problem}."
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchmarkError(f"Config file {str(path)!r} must hold a mapping of settings.")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge OVER into a copy of BASE (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_keys(data: dict[str, Any], fields: dict[str, Any], where: str) -> None:
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise BenchmarkError(
                f"Unknown setting {where}{key!r}.{hint} "
                f"Known settings: {', '.join(sorted(fields))}."
            )


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """One line per invalid field: name, problem, and the value given."""
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        lines.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "Invalid configuration: " + "; ".join(lines) + "."


def resolve(spec: ModelSpec, user: dict[str, Any], quick: bool) -> RunConfig:
    """The run config of one plugin: defaults < recipe < regime < USER (file, flags, --set)."""
    _check_keys(user, RunConfig.model_fields, "")
    recipe = spec.recipe.model_dump()
    layers: dict[str, Any] = {k: recipe[k] for k in RECIPE_KEYS}
    layers["plugin"] = spec.name
    if quick:
        layers = merge(layers, {**QUICK_REGIME, "regime": "quick"})
        layers = merge(layers, dict(spec.quick))
    if user.get("loss", layers["loss"]) != layers["loss"]:
        layers["loss_options"] = {}  # the recipe's options belong to the recipe's loss
    cfg = merge(layers, user)
    try:
        run = RunConfig(**cfg)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc)) from None
    if run.variant not in spec.variants and run.variant != "paper":
        raise BenchmarkError(
            f"Unknown variant {run.variant!r} of {spec.name!r}. "
            f"Available variants: {', '.join(sorted({'paper', *spec.variants}))}."
        )
    model_options(spec, run)  # validate now, before any work
    return run


METHOD_KEYS = ("loss", "loss_options", "mining", "sam_rho")  # what a method ablation changes


def options_tag(spec: ModelSpec, run: RunConfig) -> str:
    """'' when RUN uses its plugin's method as the variant and regime define it; otherwise
    '-opts' and a short hash of what changed (model options, loss and its options, mining,
    SAM), so that an ablation gets its own result and checkpoint names instead of
    overwriting the plugin's own run. Training budget (epochs, lr, ...) is not part of it."""

    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, sort_keys=True, default=str))

    base = resolve(spec, {"variant": run.variant}, run.regime == "quick")
    model = plain(base.model)
    changed = {f"model.{k}": v for k, v in plain(run.model).items() if model.get(k) != v}
    changed |= {
        k: v for k in METHOD_KEYS if (v := plain(getattr(run, k))) != plain(getattr(base, k))
    }
    if not changed:
        return ""
    return "-opts" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def model_options(spec: ModelSpec, run: RunConfig) -> ModelOptions:
    """The plugin's options: paper defaults < variant < run.model overrides."""
    _check_keys(run.model, spec.options.model_fields, "model.")
    values = merge(dict(spec.variants.get(run.variant, {})), run.model)
    try:
        return spec.options(**values)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc, "model.")) from None
