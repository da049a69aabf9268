"""Plugin packages: found through entry points, imported only when one of their names is
needed, validated when they load; name lookup with suggestions.

A plugin package has an entry point in the ``cvgl_benchmark`` group (its hook module) and
declares the names it provides in the groups ``cvgl_benchmark.methods``, ``.datasets``,
``.losses`` and ``.metrics`` (and ``.observers`` when it implements an observer hook), each
entry's value being that hook module. Declared names are listed without importing the
package; a package that declares nothing is imported whenever a name might be its.

Clashes: the harness's own package (the built-ins) is never replaced. Another package's
entry point with a built-in entry point's name is not loaded, and its spec with a built-in
name is dropped; both package names are reported. A name that two other packages claim is
unusable until one is uninstalled or left out with ``CVGL_BENCHMARK_PLUGINS``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any, Literal

import pluggy
from pydantic import ValidationError

from benchmark import hookspecs
from benchmark.errors import BenchmarkError, suggest
from benchmark.plugin_checks import (
    GROUPS,
    KINDS,
    PluginFailure,
    check_declared,
    check_hooks,
    check_settings,
    check_signatures,
    returned_specs,
    spec_problems,
)
from benchmark.renames import current_method
from benchmark.specs import DatasetSpec, LossSpec, MetricSpec, ModelSpec

ALLOW_ENV = "CVGL_BENCHMARK_PLUGINS"
HARNESS = "cvgl-benchmark"


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin comes from: entry-point name, distribution (package) and version."""

    name: str
    package: str
    version: str

    @property
    def builtin(self) -> bool:
        """Whether this is one of the harness's own entry points."""
        return self.package == HARNESS

    def describe(self) -> str:
        """'package NAME VERSION (entry point EP)'."""
        if self.package == "?":
            return f"entry point {self.name} (no package metadata)"
        return f"package {self.package} {self.version} (entry point {self.name})"


@dataclass
class Plugin:
    """One plugin entry point, what it declares (None: nothing) and its loading state."""

    info: PluginInfo
    load: Callable[[], object]
    declared: dict[str, set[str]] | None = None
    state: Literal["pending", "loaded", "failed"] = "pending"
    error: str = ""


class HookManager(pluggy.PluginManager):
    """pluggy's manager, taking every ``benchmark_*`` function as a hook implementation (as
    pytest does for ``pytest_*``), so that a misspelled hook is reported, never ignored."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        """The options of NAME in PLUGIN, defaults for an unmarked ``benchmark_*`` routine."""
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or not name.startswith(hookspecs.HOOK_PREFIX):
            return opts
        found = inspect.getattr_static(plugin, name, None)
        if not (inspect.isfunction(found) or isinstance(found, staticmethod | classmethod)):
            return None
        return {
            "wrapper": False,
            "hookwrapper": False,
            "optionalhook": False,
            "tryfirst": False,
            "trylast": False,
            "specname": None,
        }


class SpecTable(Mapping[str, Any]):
    """The specs of one kind by name; a name's package is imported on first access."""

    def __init__(self, registry: Registry, kind: str) -> None:
        self.registry = registry
        self.kind = kind

    def __getitem__(self, name: str) -> Any:
        try:
            return self.registry.get(self.kind, name)
        except BenchmarkError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self.registry.names(self.kind)

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names(self.kind))

    def __len__(self) -> int:
        return len(self.registry.names(self.kind))

    def values(self) -> list[Any]:  # type: ignore[override]
        """Every usable spec of this kind (imports the packages that provide one)."""
        return self.registry.all(self.kind)


@dataclass
class Registry:
    """All plugin packages and, as they load, their specs by kind and name."""

    plugins: list[Plugin]
    pm: pluggy.PluginManager = field(init=False)
    claims: dict[tuple[str, str], list[Plugin]] = field(default_factory=dict)
    loaded: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.pm = HookManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for plugin in self.plugins:
            for kind, names in (plugin.declared or {}).items():
                for name in names if kind in KINDS else ():
                    self.claims.setdefault((kind, name), []).append(plugin)

    @property
    def models(self) -> SpecTable:
        """Methods by name."""
        return SpecTable(self, "models")

    @property
    def datasets(self) -> SpecTable:
        """Datasets by name."""
        return SpecTable(self, "datasets")

    @property
    def losses(self) -> SpecTable:
        """Losses by name."""
        return SpecTable(self, "losses")

    @property
    def metrics(self) -> SpecTable:
        """Metrics by name."""
        return SpecTable(self, "metrics")

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, once every package that may observe a run has loaded."""
        for plugin in self.plugins:
            if plugin.declared is None or plugin.declared.get("observers"):
                self._load(plugin)
        return self.pm.hook

    @property
    def load_errors(self) -> dict[str, str]:
        """Entry-point name -> why that package cannot be used, for those that failed."""
        return {p.info.name: p.error for p in self.plugins if p.state == "failed"}

    def names(self, kind: str) -> list[str]:
        """Usable names of KIND (declared ones without importing their packages)."""
        self._load_undeclared()
        usable = []
        for k, name in list(self.claims):
            owner = self._owner(k, name) if k == kind else None
            if owner is not None and owner.state != "failed":
                usable.append(name)
        return sorted(usable)

    def info(self, kind: str, name: str) -> PluginInfo:
        """The package that provides NAME of KIND (a listed name: without importing it)."""
        name = _current(kind, name)
        owner = self._owner(kind, name)
        if owner is None:
            unknown = suggest(name, self.names(kind), KINDS[kind])
            raise BenchmarkError(self.conflicts.get((kind, name), unknown))
        return owner.info

    def get(self, kind: str, name: str) -> Any:
        """The spec of KIND called NAME (a renamed method by its old name too); raises with
        close matches or the package's fault."""
        name = _current(kind, name)
        key = (kind, name)
        owner = self._owner(kind, name)
        if owner is None or not owner.info.builtin:
            self._load_undeclared()  # they may claim NAME too
        while (owner := self._owner(kind, name)) is not None and owner.state == "pending":
            self._load(owner)  # a failure may hand NAME to another claimant
        if owner is not None and owner.state == "loaded":
            return self.loaded[key][owner.info.name]
        if owner is not None:
            raise BenchmarkError(f"The {KINDS[kind]} {name!r} cannot be used: {owner.error}")
        if key in self.conflicts:
            raise BenchmarkError(self.conflicts[key])
        for plugin in self.plugins:  # a package that failed before it could say what it has
            if plugin.state == "failed" and plugin.info.name == name:
                raise BenchmarkError(f"The {KINDS[kind]} {name!r} cannot be used: {plugin.error}")
        raise BenchmarkError(suggest(name, self.names(kind), KINDS[kind]))

    def model(self, name: str) -> ModelSpec:
        """The method called NAME."""
        return self.get("models", name)

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset called NAME."""
        return self.get("datasets", name)

    def loss(self, name: str) -> LossSpec:
        """The loss called NAME."""
        return self.get("losses", name)

    def metric(self, name: str) -> MetricSpec:
        """The metric called NAME."""
        return self.get("metrics", name)

    def all(self, kind: str) -> list[Any]:
        """Every usable spec of KIND, importing only the packages that provide one."""
        for plugin in self.plugins:
            if plugin.declared is None or plugin.declared.get(kind):
                self._load(plugin)
        return [self.get(kind, name) for name in self.names(kind)]

    def failures(self, methods: list[str]) -> dict[str, str]:
        """Requested METHODS (every method for ['all']) whose package failed, with why."""
        if methods == ["all"]:
            for plugin in self.plugins:
                self._load(plugin)
            methods = [name for (kind, name) in self.claims if kind == "models"]
            methods += [p.info.name for p in self.plugins if p.declared is None]
        found = {}
        for name in map(current_method, methods):
            try:
                self.get("models", name)
            except BenchmarkError as exc:
                failed = [p for p in self._claimants_or_named(name) if p.state == "failed"]
                if failed and ("models", name) not in self.conflicts:
                    found[name] = str(exc)
        return dict(sorted(found.items()))

    def provenance(self, method: str) -> PluginInfo:
        """The entry point, package and version that provide METHOD (also when it failed)."""
        method = current_method(method)
        owner = self._owner("models", method) or next(iter(self._claimants_or_named(method)), None)
        return owner.info if owner is not None else PluginInfo(method, "?", "?")

    def _claimants_or_named(self, name: str) -> list[Plugin]:
        claimants = self.claims.get(("models", name), [])
        return claimants or [p for p in self.plugins if p.info.name == name]

    def _owner(self, kind: str, name: str) -> Plugin | None:
        """The plugin that owns NAME of KIND under the clash policy; None when unusable.

        A built-in claimant owns its names whatever the others claim (even when it failed:
        a built-in is never replaced); otherwise packages known to have failed yield to
        working ones, and two or more claimants make the name unusable."""
        key = (kind, name)
        claimants = self.claims.get(key, [])
        builtins = [p for p in claimants if p.info.builtin]
        self.conflicts.pop(key, None)
        if len(builtins) == 1:
            for other in claimants:
                if other is not builtins[0]:
                    self._report(
                        f"warning: {other.info.describe().capitalize()} also provides the "
                        f"{KINDS[kind]} {name!r}, which is built into "
                        f"{builtins[0].info.describe()}; the built-in is used and never "
                        f"replaced. Ask that package to rename its {KINDS[kind]}."
                    )
            return builtins[0]
        live = [p for p in claimants if p.state != "failed"] or claimants
        if len(live) <= 1:
            return live[0] if live else None
        packages = " and by ".join(p.info.describe() for p in live)
        self.conflicts[key] = (
            f"The {KINDS[kind]} name {name!r} is provided by {packages}, so it is unusable. "
            f"Uninstall one of them or leave one out with {ALLOW_ENV}=core,name1,name2 "
            "(entry-point names)."
        )
        self._report(f"error: {self.conflicts[key]}")
        return None

    def _report(self, line: str) -> None:
        if line not in self.reported:
            self.reported.add(line)
            print(line, file=sys.stderr)

    def _load_undeclared(self) -> None:
        for plugin in self.plugins:
            if plugin.declared is None:
                self._load(plugin)

    def _load(self, plugin: Plugin) -> None:
        """Import PLUGIN, check its hooks and specs; a fault fails this package only."""
        if plugin.state != "pending":
            return
        plugin.state = "failed"
        try:
            with contextlib.redirect_stdout(sys.stderr):  # keep machine-readable output clean
                specs = self._collect(plugin)
        except PluginFailure as exc:
            plugin.error = str(exc)
            self._report(f"warning: {exc} The other plugin packages still work.")
            return
        plugin.state = "loaded"
        for kind, items in specs.items():
            for spec in items:
                key = (kind, spec.name)
                self.loaded.setdefault(key, {})[plugin.info.name] = spec
                if plugin not in self.claims.setdefault(key, []):
                    self.claims[key].append(plugin)

    def _collect(self, plugin: Plugin) -> dict[str, list[Any]]:
        who = plugin.info.describe().capitalize()
        try:
            module = plugin.load()
        except ValidationError as exc:
            raise PluginFailure(f"{who} has an invalid {spec_problems(exc)}.") from None
        except (Exception, SystemExit) as exc:
            raise PluginFailure(f"{who} failed to import ({type(exc).__name__}: {exc}).") from None
        check_signatures(module, who)
        try:
            self.pm.register(module, name=plugin.info.name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginFailure(f"{who} cannot be registered: {exc}.") from None
        try:
            return self._checked_specs(plugin, module, who)
        except PluginFailure:
            self.pm.unregister(module)
            raise

    def _checked_specs(self, plugin: Plugin, module: object, who: str) -> dict[str, list[Any]]:
        check_hooks(self.pm, module, plugin.declared, plugin.info.name, who)
        specs: dict[str, list[Any]] = {}
        for kind, hook in hookspecs.COLLECTING.items():
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.plugin is module:
                    specs[kind] = returned_specs(impl.function, hook, kind, who)
        for spec in specs.get("models", []):
            check_settings(spec, who)
        if plugin.declared is not None:
            check_declared(plugin.declared, specs, who)
        return specs


def _current(kind: str, name: str) -> str:
    """NAME, or the current name of a renamed method."""
    return current_method(name) if kind == "models" else name


def allowed_plugins() -> set[str] | None:
    """Entry-point names allowed by $CVGL_BENCHMARK_PLUGINS (None = all installed)."""
    raw = os.environ.get(ALLOW_ENV, "").strip()
    if not raw:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()} | {"core"}


def _entry_points() -> list[metadata.EntryPoint]:
    """The installed plugin entry points (group ``cvgl_benchmark``), by name."""
    eps = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: (ep.name, _info(ep).package))


def _info(ep: metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist
    return PluginInfo(ep.name, dist.name if dist else "?", dist.version if dist else "?")


def discover() -> tuple[list[Plugin], list[str]]:
    """The allowed plugin entry points with their declarations, and clash reports."""
    allow = allowed_plugins()
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for ep in _entry_points():
        if allow is None or ep.name in allow:
            by_name.setdefault(ep.name, []).append(ep)
    plugins, reports, by_module = [], [], {}
    for name, eps in by_name.items():
        infos = [_info(ep) for ep in eps]
        builtins = [i for i in infos if i.builtin]
        for ep, info in zip(eps, infos, strict=True):
            plugin = Plugin(info, ep.load)
            by_module[(info.package, ep.value)] = plugin
            plugins.append(plugin)
            if len(eps) > 1 and not (info.builtin and len(builtins) == 1):
                others = " and ".join(i.describe() for i in infos if i is not info)
                plugin.state = "failed"
                plugin.error = (
                    f"{info.describe().capitalize()} is not loaded: its entry-point name "
                    f"{name!r} is also used by {others}"
                    + (
                        ", which is built in and never replaced. Rename the entry point."
                        if builtins
                        else f". Uninstall one of them or leave one out with {ALLOW_ENV}."
                    )
                )
                reports.append(f"warning: {plugin.error}")
    every = metadata.entry_points()
    for kind, group in GROUPS.items():
        for ep in every.select(group=group):
            plugin = by_module.get((_info(ep).package, ep.value))
            if plugin is not None:
                plugin.declared = plugin.declared or {}
                plugin.declared.setdefault(kind, set()).add(ep.name)
    return plugins, reports


def build_registry(extra: list[tuple[str, object]] | None = None) -> Registry:
    """The registry of the allowed installed plugin packages, plus EXTRA (name, module)
    plugins (loaded at once; for tests and embedding)."""
    plugins, reports = discover()
    for name, module in extra or []:
        plugins.append(Plugin(PluginInfo(name, "<local>", "-"), lambda m=module: m))
    reg = Registry(plugins)
    for line in reports:
        reg._report(line)
    for plugin in plugins[len(plugins) - len(extra or []) :]:
        reg._load(plugin)
    return reg


@cache
def registry() -> Registry:
    """The process-wide registry (built once)."""
    return build_registry()
