"""Plugin loading (entry points, with an allow-list) and name lookup with suggestions."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

import pluggy

from benchmark import hookspecs
from benchmark.errors import BenchmarkError, suggest
from benchmark.specs import DatasetSpec, LossSpec, MetricSpec, ModelSpec

ALLOW_ENV = "CVGL_BENCHMARK_PLUGINS"
KINDS = {"models": "model", "datasets": "dataset", "losses": "loss", "metrics": "metric"}


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from: entry-point name, distribution and version."""

    name: str
    package: str
    version: str


@dataclass
class Registry:
    """All specs from all loaded plugins, by kind and name."""

    pm: pluggy.PluginManager
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    losses: dict[str, LossSpec] = field(default_factory=dict)
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    origin: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    load_errors: dict[str, str] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Any:
        """Return the spec of KIND called NAME or raise with close matches."""
        table: dict[str, Any] = getattr(self, kind)
        if (kind, name) in self.conflicts:
            raise BenchmarkError(self.conflicts[(kind, name)])
        if name not in table:
            message = suggest(name, table, KINDS[kind])
            broken = [p for p in self.load_errors if p == name]
            if broken:
                message += (
                    f" Plugin {name!r} is installed but failed to load: {self.load_errors[name]}"
                )
            raise BenchmarkError(message)
        return table[name]

    def model(self, name: str) -> ModelSpec:
        """Return the model spec called NAME."""
        return self.get("models", name)

    def dataset(self, name: str) -> DatasetSpec:
        """Return the dataset spec called NAME."""
        return self.get("datasets", name)

    def loss(self, name: str) -> LossSpec:
        """Return the loss spec called NAME."""
        return self.get("losses", name)

    def metric(self, name: str) -> MetricSpec:
        """Return the metric spec called NAME."""
        return self.get("metrics", name)


def allowed_plugins() -> set[str] | None:
    """Entry-point names allowed by $CVGL_BENCHMARK_PLUGINS (None = all installed)."""
    raw = os.environ.get(ALLOW_ENV, "").strip()
    if not raw:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()} | {"core"}


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    unique = {ep.name: ep for ep in eps}
    return [unique[name] for name in sorted(unique)]


def build_registry(extra: list[tuple[str, object]] | None = None) -> Registry:
    """Load allowed entry-point plugins (and EXTRA modules) and collect their specs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm=pm)
    allow = allowed_plugins()
    sources: list[tuple[PluginInfo, Any]] = []
    for ep in _entry_points():
        if allow is not None and ep.name not in allow:
            continue
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?")
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party package must not take the others down
            reg.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            print(
                f"warning: plugin {ep.name!r} from package {info.package} failed to import "
                f"({type(exc).__name__}: {exc}); the other plugins still work.",
                file=sys.stderr,
            )
            continue
        sources.append((info, module))
    for name, module in extra or []:
        sources.append((PluginInfo(name, "<local>", "-"), module))
    for info, module in sources:
        pm.register(module, name=info.name)
        reg.plugins.append(info)
        for kind in KINDS:
            hook = getattr(pm.hook, f"benchmark_{kind}")
            impls = [i for i in hook.get_hookimpls() if i.plugin is module]
            for impl in impls:
                try:
                    specs = impl.function() or []
                except Exception as exc:
                    reg.load_errors[info.name] = f"{type(exc).__name__}: {exc}"
                    print(
                        f"warning: plugin {info.name!r} from package {info.package} raised in "
                        f"benchmark_{kind}() ({type(exc).__name__}: {exc}); skipped.",
                        file=sys.stderr,
                    )
                    continue
                for spec in specs:
                    _add(reg, kind, spec, info)
    return reg


def _add(reg: Registry, kind: str, spec: Any, info: PluginInfo) -> None:
    """Add SPEC; a name registered twice becomes unusable, with an error naming both packages."""
    table = getattr(reg, kind)
    key = (kind, spec.name)
    if key in reg.conflicts:
        return
    if spec.name in table:
        first = reg.origin[key]
        message = (
            f"Duplicate {KINDS[kind]} name {spec.name!r}: registered by plugin {first.name!r} "
            f"(package {first.package}) and again by plugin {info.name!r} (package "
            f"{info.package}). Uninstall one of them or restrict loading with "
            f"{ALLOW_ENV}=name1,name2."
        )
        del table[spec.name]
        reg.conflicts[key] = message
        print(f"error: {message}", file=sys.stderr)
        return
    table[spec.name] = spec
    reg.origin[key] = info


@cache
def registry() -> Registry:
    """The process-wide registry (built once)."""
    return build_registry()
