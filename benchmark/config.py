"""Run configuration: defaults < paper recipe < regime < config file < flags < --set.

Each setting's role is declared once, on its field (see benchmark/settings.py); which
fields a recipe or regime may set, which ones only their own flags choose, and which ones
form the run's identity are all derived from those roles. ``resolve_layers`` also records
where every final value came from, for ``python -m benchmark config show``.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark import regimes
from benchmark.errors import BenchmarkError
from benchmark.settings import ROLES as ROLE_NAMES
from benchmark.settings import Recipe, roles_of, setting
from benchmark.specs import ModelOptions, ModelSpec

MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few lines; refuse megabytes
MAX_CONFIG_VALUES = 100_000  # values after YAML aliases are expanded (an alias bomb is not)


class RunConfig(Recipe):
    """Everything one (plugin, dataset, split) run depends on; recorded in its result.

    The recipe fields come from Recipe; every field declares its role."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    plugin: str = setting("identity")
    variant: str = setting("identity", "paper")
    regime: str = setting(
        "identity", "paper", description="a file in benchmark/regimes (paper, quick, ...)"
    )
    dataset: str = setting("data", "synthetic")
    data_root: Path | None = setting("data", None)
    split: str | None = setting("data", None)
    dataset_options: dict[str, Any] = setting("data", default_factory=dict)
    limit: int | None = setting(
        "data", None, ge=2, description="cap train and test pairs (smoke runs)"
    )
    model: dict[str, Any] = setting(
        "method", default_factory=dict, description="model option overrides"
    )
    val_seed: int = setting(
        "randomness", 0, ge=0, lt=2**32, description="seed of the validation split"
    )
    seed: int = setting("randomness", 0, ge=0, lt=2**32)
    deterministic: bool = setting("randomness", True)
    protocol: str = setting(
        "evaluation",
        "aligned",
        pattern=r"^(aligned|unknown-orientation|fov=\d+)$",
        description="evaluation protocol: aligned, unknown-orientation or fov=N (degrees)",
    )
    protocol_seed: int = setting(
        "evaluation", 0, ge=0, lt=2**32, description="seed of the protocol's random azimuths"
    )
    retrieval: Literal["auto", "faiss", "torch"] = setting("evaluation", "auto")
    topk: int = setting(
        "evaluation", 10, ge=1, le=10_000, description="top-k references stored per query"
    )
    metrics: list[str] | None = setting(
        "evaluation", None, description="metric names to compute (default: all)"
    )
    device: str = setting("infrastructure", "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    workers: Annotated[int, Field(ge=0, le=256)] | Literal["auto"] = setting(
        "infrastructure",
        0,
        description="DataLoader workers per process, or auto (from the cores and the device)",
    )
    eval_batch_size: int = setting("infrastructure", 64, ge=1, le=65_536)
    eval_memory_mb: int = setting(
        "infrastructure",
        512,
        ge=1,
        le=2**24,
        description="bound on retrieval's working memory (query chunks)",
    )
    results_dir: Path = setting("infrastructure", Path("results"))
    save_descriptors: bool = setting(
        "infrastructure", False, description="keep test descriptors beside the result"
    )
    profile: bool = setting(
        "infrastructure", True, description="measure params/GMACs/latency/memory after the run"
    )
    log: list[str] = setting(
        "infrastructure",
        default_factory=list,
        description="trackers besides the JSON-lines/CSV log every run writes: tensorboard",
    )

    @field_validator("protocol")
    @classmethod
    def _field_of_view_in_range(cls, value: str) -> str:
        if value.startswith("fov=") and not 0 < int(value[4:]) <= 360:
            raise ValueError("a field of view is 1 to 360 degrees, e.g. fov=90")
        return value

    @field_validator("regime")
    @classmethod
    def _known_regime(cls, value: str) -> str:
        if value not in regimes.available():
            raise ValueError(f"known regimes are {', '.join(sorted(regimes.available()))}")
        return value

    @field_validator("augment", "metrics", "log", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """--set metrics=recall,mrr: a comma list for a list setting."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("augment")
    @classmethod
    def _known_augmentations(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        from benchmark.data.augment import check_names  # torch: not for the leaderboard

        return check_names(value)

    @model_validator(mode="before")
    @classmethod
    def _default_validation_split(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("val_fraction") is None:
            best = data.get("selection", "last") == "best"
            data = {**data, "val_fraction": 0.05 if best else 0.0}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("give the warm-up once: warmup_steps or warmup_epochs, not both")
        if self.selection == "best" and not self.val_fraction:
            raise ValueError(
                "selection=best picks the epoch on a validation split: give val_fraction > 0 "
                "or use selection=last"
            )
        if self.precision == "fp16" and self.sam_rho is not None:
            raise ValueError(
                "precision=fp16 needs loss scaling, which the two passes of ASAM (sam_rho) do "
                "not support here; use precision=bf16 or fp32, or sam_rho=null"
            )
        return self


ROLES: dict[str, str] = roles_of(RunConfig)
IDENTITY_FIELDS = frozenset(k for k, role in ROLES.items() if role == "identity")
FLAG_FOR = {"plugin": "--plugins", "variant": "--variant", "regime": "--regime"}


def fields_with_role(*roles: str) -> tuple[str, ...]:
    """The RunConfig fields whose role is one of ROLES, in declaration order."""
    return tuple(k for k, role in ROLES.items() if role in roles)


def parse_value(text: str) -> Any:
    """Parse a --set value: JSON first (numbers, lists, true/false/null), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.strip().lower()
        if low in ("true", "false", "none", "null"):
            return {"true": True, "false": False}.get(low)
        return text


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """Turn ['a=1', 'model.head=gap'] into a nested dict; a key given both a value and
    sub-keys (``a=1`` and ``a.b=2``) is an error."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise BenchmarkError(f"--set expects KEY=VALUE, got {item!r} (example: --set lr=1e-4).")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(part.strip() for part in parts):
            raise BenchmarkError(f"--set {item!r} has an empty name in its key; write a.b=VALUE.")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                group = ".".join(parts[: depth + 1])
                raise BenchmarkError(
                    f"--set {item!r} conflicts with an earlier --set {group}=...: {group} was "
                    "given a value, so it cannot also hold sub-settings. Keep one of the two."
                )
            node = child
        value = parse_value(text)
        old = node.get(parts[-1])
        if isinstance(old, dict) and not isinstance(value, dict):
            raise BenchmarkError(
                f"--set {item!r} conflicts with an earlier --set {key}.KEY=...: {key} holds "
                "sub-settings, so it cannot also be given a value. Keep one of the two."
            )
        node[parts[-1]] = merge(old, value) if isinstance(old, dict) else value
    return out


def _count_values(data: Any, limit: int) -> int:
    """Values in DATA with shared (aliased) parts counted each time they appear; stops
    counting past LIMIT, so an alias bomb or a self-referencing file is cheap to refuse."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return count


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file; syntax errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Config file {str(path)!r} does not exist.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise BenchmarkError(
            f"Config file {str(path)!r} is larger than {MAX_CONFIG_BYTES // 1024} KiB; a "
            "settings file holds a few lines."
        )
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"Config file {str(path)!r} could not be read ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchmarkError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BenchmarkError(
            f"Config file {str(path)!r} is not valid YAML{where}: {problem}."
        ) from exc
    except RecursionError:
        raise BenchmarkError(f"Config file {str(path)!r} is nested too deeply.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchmarkError(f"Config file {str(path)!r} must hold a mapping of settings.")
    if _count_values(data, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise BenchmarkError(
            f"Config file {str(path)!r} expands to more than {MAX_CONFIG_VALUES:,} values "
            "(YAML aliases repeat what they point to); write the settings out plainly."
        )
    return data


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge OVER into a copy of BASE (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_keys(data: Mapping[str, Any], fields: Mapping[str, Any], where: str) -> None:
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise BenchmarkError(
                f"Unknown setting '{where}{key}'.{hint} "
                f"Known settings{' of ' + where.rstrip('.') if where else ''}: "
                f"{', '.join(sorted(fields))}."
            )


def validation_message(
    exc: ValidationError, prefix: str = "", origin: Mapping[str, str] | None = None
) -> str:
    """One line per invalid field: name, problem, the value given and where it came from."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(msg)
            continue
        loc = prefix + ".".join(str(p) for p in err["loc"])
        source = (origin or {}).get(loc)
        where = f", from {source}" if source and source != "default" else ""
        lines.append(f"{loc}: {msg} (got {err.get('input')!r}{where})")
    return "Invalid configuration: " + "; ".join(lines) + "."


@dataclass(frozen=True)
class Layer:
    """One source of settings. KIND is default, recipe, regime, plugin, file, flag or set;
    SOURCE is how `config show` names it (e.g. 'file run.yaml')."""

    kind: str
    source: str
    values: Mapping[str, Any]


def _flat(prefix: str, values: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            _flat(f"{prefix}{key}.", value, out)
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass(frozen=True)
class Resolved:
    """A resolved run: its config, the model options it builds, and each value's source."""

    spec: ModelSpec
    run: RunConfig
    options: ModelOptions
    origin: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, Any, str, str]]:
        """(setting, value, source, role) for every field; dicts one row per key."""
        run = self.run.model_dump(mode="json")
        rows: list[tuple[str, Any, str, str]] = []
        variant = self.spec.variants.get(self.run.variant, {})
        order = list(ROLE_NAMES)
        for name, role in sorted(ROLES.items(), key=lambda item: order.index(item[1])):
            if name == "model":
                for key, value in self.options.model_dump(mode="json").items():
                    source = self.origin.get(f"model.{key}")
                    if source is None:
                        source = f"variant {self.run.variant}" if key in variant else "default"
                    rows.append((f"model.{key}", value, source, role))
            elif isinstance(run[name], dict) and run[name]:
                for key, value in _flat(f"{name}.", run[name], {}).items():
                    rows.append((key, value, self.origin.get(key, "default"), role))
            else:
                rows.append((name, run[name], self.origin.get(name, "default"), role))
        return rows


def _plugin_settings(spec: ModelSpec, regime: regimes.Regime) -> dict[str, Any]:
    values = dict(spec.quick) if regime.plugin_settings == "quick" else {}
    allowed = sorted(k for k, role in ROLES.items() if role in ("recipe", "method"))
    wrong = sorted(k for k in values if k not in allowed)
    if wrong:
        close = [c for k in wrong for c in difflib.get_close_matches(k, allowed, n=1)]
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise BenchmarkError(
            f"The {regime.plugin_settings} settings of {spec.name!r} set "
            f"{', '.join(map(repr, wrong))}{hint}; they may set recipe fields and model "
            "options only."
        )
    return values


def _check_user_layer(layer: Layer) -> None:
    _check_keys(layer.values, ROLES, "")
    allowed = {"variant"} if layer.kind == "flag" else set()  # --variant is a flag
    for key in sorted(IDENTITY_FIELDS & set(layer.values) - allowed):
        raise BenchmarkError(
            f"{key!r} is part of a run's identity and is chosen with {FLAG_FOR[key]}, not "
            f"with {layer.source}. Use {FLAG_FOR[key]} {layer.values[key]}."
        )


def resolve_layers(spec: ModelSpec, user: Sequence[Layer], regime: str = "paper") -> Resolved:
    """SPEC's run config from its recipe, the REGIME, and the USER layers (in order), with
    where each value came from."""
    chosen = regimes.get(regime)
    stated = set(spec.recipe.model_fields_set) - {"datasets"}  # others keep Recipe's defaults
    dataset = next(
        (layer.values["dataset"] for layer in reversed(user) if "dataset" in layer.values),
        RunConfig.model_fields["dataset"].default,
    )
    on_dataset = spec.recipe.datasets.get(dataset, {})  # e.g. SAFA's CVACT negatives mask
    layers = [
        Layer("identity", "--plugins", {"plugin": spec.name}),
        Layer("recipe", f"{spec.name} recipe", spec.recipe.model_dump(include=stated)),
        *([Layer("recipe", f"{spec.name} recipe on {dataset}", on_dataset)] if on_dataset else []),
        Layer("regime", f"regime {chosen.name}", {"regime": chosen.name, **chosen.settings}),
    ]
    plugin = _plugin_settings(spec, chosen)
    if plugin:
        layers.append(Layer("plugin", f"{spec.name} {chosen.plugin_settings} settings", plugin))
    for layer in user:
        _check_user_layer(layer)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def apply(layer: Layer) -> None:
        nonlocal values
        values = merge(values, layer.values)
        for key in _flat("", layer.values, {}):
            origin[key] = layer.source
        for key in layer.values:  # a replaced dict forgets the sources of its old keys
            if not isinstance(layer.values[key], dict):
                for old in [k for k in origin if k.startswith(f"{key}.")]:
                    del origin[old]

    for layer in layers:
        apply(layer)
    loss = values.get("loss", Recipe().loss)
    for layer in user:
        if "loss" in layer.values and layer.values["loss"] != loss:
            # the recipe's loss options belong to the recipe's loss
            values.pop("loss_options", None)
            for key in [k for k in origin if k == "loss_options" or k.startswith("loss_options.")]:
                del origin[key]
            origin["loss_options"] = f"default ({layer.source} changed the loss)"
            break
    for layer in user:
        apply(layer)
    try:
        run = RunConfig(**values)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc, origin=origin)) from None
    if run.variant not in spec.variants and run.variant != "paper":
        raise BenchmarkError(
            f"Unknown variant {run.variant!r} of {spec.name!r}. "
            f"Available variants: {', '.join(sorted({'paper', *spec.variants}))}."
        )
    return Resolved(spec, run, model_options(spec, run), origin)


def resolve(
    spec: ModelSpec,
    user: Mapping[str, Any] | None = None,
    quick: bool = False,
    *,
    regime: str | None = None,
) -> RunConfig:
    """SPEC's run config under REGIME (or 'quick' when QUICK, else 'paper') with USER
    settings on top (a dict as flags and --set give it; the variant may be among them)."""
    layer = Layer("flag", "caller", dict(user or {}))
    return resolve_layers(spec, [layer], regime or ("quick" if quick else "paper")).run


def model_options(spec: ModelSpec, run: RunConfig) -> ModelOptions:
    """The plugin's options: paper defaults < variant < run.model overrides."""
    _check_keys(run.model, spec.options.model_fields, "model.")
    values = merge(dict(spec.variants.get(run.variant, {})), run.model)
    try:
        return spec.options(**values)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc, "model.")) from None
