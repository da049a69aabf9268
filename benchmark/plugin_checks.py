"""What a plugin package is checked for when it loads: hook names and signatures, the
types its hooks return, its specs' validity and run settings, and its declared names.
Each check raises PluginFailure with a sentence naming the package and the fault."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import pluggy
from pydantic import ValidationError

from benchmark import hookspecs
from benchmark.errors import BenchmarkError
from benchmark.specs import DatasetSpec, LossSpec, MetricSpec, ModelCard, ModelSpec

KINDS = {"models": "method", "datasets": "dataset", "losses": "loss", "metrics": "metric"}
SPEC_TYPES: dict[str, type] = {
    "models": ModelSpec,
    "datasets": DatasetSpec,
    "losses": LossSpec,
    "metrics": MetricSpec,
}
GROUPS = {
    "models": "cvgl_benchmark.methods",
    "datasets": "cvgl_benchmark.datasets",
    "losses": "cvgl_benchmark.losses",
    "metrics": "cvgl_benchmark.metrics",
    "observers": "cvgl_benchmark.observers",
}


class PluginFailure(Exception):
    """A plugin package that cannot be used; the message names the package and the fault."""


def spec_problems(exc: ValidationError) -> str:
    """'ModelSpec: variants: ...; name: ...' from a spec's validation error."""
    cls = next((c for c in [*SPEC_TYPES.values(), ModelCard] if c.__name__ == exc.title), None)
    names = [f.name for f in dataclasses.fields(cls)] if cls else []
    problems = []
    for err in exc.errors():
        loc = [names[p] if isinstance(p, int) and p < len(names) else str(p) for p in err["loc"]]
        where = ".".join(loc) + ": " if loc else ""
        problems.append(f"{where}{err['msg'].removeprefix('Value error, ')}")
    return f"{exc.title} ({'; '.join(problems)})"


def check_signatures(module: object, who: str) -> None:
    """Every hook implementation of MODULE takes only arguments its specification gives."""
    for name, spec in inspect.getmembers(hookspecs, inspect.isfunction):
        impl = getattr(module, name, None)
        if not name.startswith(hookspecs.HOOK_PREFIX) or not callable(impl):
            continue
        given = list(inspect.signature(spec).parameters)
        params = list(inspect.signature(impl).parameters.values())
        wanted = [p.name for p in params if p.default is p.empty and p.name not in given]
        if wanted:
            raise PluginFailure(
                f"{who} has a hook with the wrong signature: "
                f"{name}({', '.join(p.name for p in params)}) asks for "
                f"{', '.join(map(repr, wanted))}, which the hook does not provide (its "
                f"specification is {name}({', '.join(given)}))."
            )


def check_hooks(
    pm: pluggy.PluginManager, module: object, declared: dict | None, name: str, who: str
) -> None:
    """MODULE (registered in PM) implements no unknown hook, as pluggy's check_pending would
    report, and declares the observer hooks it implements, so that runs load it."""
    unknown = [
        hook
        for hook, caller in vars(pm.hook).items()
        if not hook.startswith("_")
        and not caller.has_spec()
        and any(impl.plugin is module for impl in caller.get_hookimpls())
    ]
    if unknown:
        raise PluginFailure(f"{who} implements unknown hooks: {hook_hints(unknown)}.")
    observes = [
        hook
        for hook in hookspecs.OBSERVERS
        if any(impl.plugin is module for impl in getattr(pm.hook, hook).get_hookimpls())
    ]
    if observes and declared is not None and not declared.get("observers"):
        raise PluginFailure(
            f"{who} implements {', '.join(observes)} but does not declare it: add "
            f'`{name} = "<its module>"` to [project.entry-points."{GROUPS["observers"]}"] so '
            "that runs load it."
        )


def hook_hints(names: list[str]) -> str:
    """'benchmark_model (did you mean benchmark_models?)' for each unknown hook."""
    known = [n for n in dir(hookspecs) if n.startswith(hookspecs.HOOK_PREFIX)]
    hints = []
    for name in sorted(names):
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(name + (f" (did you mean {close[0]}?)" if close else ""))
    return ", ".join(hints)


def returned_specs(function: Callable[[], Any], hook: str, kind: str, who: str) -> list[Any]:
    """What FUNCTION (the package's HOOK) returns, checked to be a list of KIND's specs."""
    expected = SPEC_TYPES[kind].__name__
    try:
        specs = function()
    except ValidationError as exc:
        raise PluginFailure(f"{who} has an invalid {spec_problems(exc)}.") from None
    except Exception as exc:
        raise PluginFailure(f"{who} raised in {hook}() ({type(exc).__name__}: {exc}).") from None
    if not isinstance(specs, list | tuple):
        raise PluginFailure(
            f"{who} returns {type(specs).__name__} from {hook}(); it must return a list of "
            f"{expected}."
        )
    names: set[str] = set()
    for i, spec in enumerate(specs):
        if not isinstance(spec, SPEC_TYPES[kind]):
            raise PluginFailure(
                f"{who} returns a {type(spec).__name__} as item {i} of {hook}(); it must return "
                f"a list of {expected} (import it from benchmark.api)."
            )
        if spec.name in names:
            raise PluginFailure(f"{who} returns the {KINDS[kind]} {spec.name!r} twice.")
        names.add(spec.name)
    return list(specs)


def check_settings(spec: ModelSpec, who: str) -> None:
    """SPEC's recipe and its quick settings resolve to valid run configurations."""
    from benchmark.config import resolve

    for quick, what in ((False, "recipe is"), (True, "quick settings are")):
        try:
            resolve(spec, {}, quick=quick)
        except BenchmarkError as exc:
            raise PluginFailure(
                f"{who} has a method {spec.name!r} whose {what} invalid: {exc}"
            ) from None


def check_declared(declared: dict[str, set[str]], specs: dict[str, list[Any]], who: str) -> None:
    """The names a package's hooks returned (SPECS) are exactly those it DECLARED."""
    for kind in KINDS:
        returned = {spec.name for spec in specs.get(kind, [])}
        missing, extra = declared.get(kind, set()) - returned, returned - declared.get(kind, set())
        if missing or extra:
            problems = [f"declares {n!r} but does not return it" for n in sorted(missing)]
            problems += [f"returns {n!r} without declaring it" for n in sorted(extra)]
            raise PluginFailure(
                f"{who} {'; '.join(problems)} ({KINDS[kind]}s; entry-point group "
                f"{GROUPS[kind]}). Make the declared names match what the hooks return."
            )
