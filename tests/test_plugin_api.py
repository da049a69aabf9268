"""The plugin API: one public module, validation when a package loads, failures confined to
their package, built-ins never replaced, and commands that print names import nothing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
import setuptools

from benchmark import __version__, api, cli, hookspecs
from benchmark import registry as registry_module
from benchmark.baselines import RAW_PIXELS
from benchmark.registry import build_registry
from benchmark.results import RunResult
from tests.conftest import PROJECT_PLUGINS, TINY_WORLD
from tests.plugin_sites import PYTHON, ROOT, install_harness, site_env, write_package

PIXELS_PLUGIN = """
import dataclasses
from benchmark.api import hookimpl
from benchmark.baselines import RAW_PIXELS
{extra}

@hookimpl
def benchmark_models():
    return [dataclasses.replace(RAW_PIXELS, name=name) for name in {names!r}]
"""


def pixels_module(*names: str, extra: str = "") -> str:
    """Source of a plugin module providing raw-pixel methods called NAMES."""
    return PIXELS_PLUGIN.format(names=list(names), extra=extra)


def local(**hooks: Any) -> types.SimpleNamespace:
    """A plugin object with the given hook implementations (unmarked: taken by name)."""
    return types.SimpleNamespace(**hooks)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory, first on sys.path, with the harness installed from this checkout."""
    path = tmp_path / "site"
    install_harness(path)
    monkeypatch.syspath_prepend(str(path))
    return path


def allow(monkeypatch: pytest.MonkeyPatch, *plugins: str) -> None:
    monkeypatch.setenv(registry_module.ALLOW_ENV, ",".join([PROJECT_PLUGINS, *plugins]))


# --- one public surface ---------------------------------------------------------------


def test_public_module_exports_exactly_its_all() -> None:
    assert api.API_VERSION == "1.0"
    public = {n for n in vars(api) if not n.startswith("_") and n != "annotations"}
    assert set(api.__all__) == public
    assert {"hookimpl", "ModelSpec", "Batch", "Loss", "Evaluation", "check_method"} <= public


def _benchmark_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmark"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("benchmark")}
    return found


def test_plugin_packages_import_the_harness_only_through_its_public_module() -> None:
    sources = [*ROOT.glob("plugins/*/*.py"), *ROOT.glob("examples/*/src/*/*.py")]
    sources += [*ROOT.glob("examples/*/tests/*.py")]
    assert len(sources) > 10
    private = {str(p.relative_to(ROOT)): _benchmark_imports(p) - {"benchmark.api"} for p in sources}
    assert {p: m for p, m in private.items() if m} == {}


def test_the_wheel_ships_the_harness_and_plugins_but_not_the_perf_scripts() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    found = set(setuptools.find_namespace_packages(str(ROOT), include=include))
    assert {"benchmark", "benchmark.data", "plugins.safa"} <= found
    assert not {p for p in found if p.split(".")[0] not in ("benchmark", "plugins")}


# --- validated at registration, failures confined to their package --------------------


def _pixels(name: str = "pixels-two") -> Any:
    return lambda: [__import__("dataclasses").replace(RAW_PIXELS, name=name)]


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            local(benchmark_model=_pixels()),
            "implements unknown hooks: benchmark_model (did you mean benchmark_models?)",
        ),
        (
            local(benchmark_models=lambda config: []),
            "wrong signature: benchmark_models(config) asks for 'config'",
        ),
        (local(benchmark_models=lambda: {"x": RAW_PIXELS}), "returns dict from benchmark_models()"),
        (
            local(benchmark_models=lambda: [api.LossSpec("l", dict)]),
            "returns a LossSpec as item 0 of benchmark_models(); it must return a list of "
            "ModelSpec",
        ),
        (
            local(benchmark_models=lambda: [1 / 0]),
            "raised in benchmark_models() (ZeroDivisionError",
        ),
        (
            local(benchmark_models=lambda: [RAW_PIXELS.__class__(**{**_fields(), "variants": {}})]),
            "invalid ModelSpec (variants: missing 'paper', 'tiny'",
        ),
        (
            local(benchmark_models=lambda: [RAW_PIXELS.__class__(**{**_fields(), "name": "a b"})]),
            "invalid ModelSpec (name: 'a b' is not a valid name",
        ),
        (
            local(benchmark_models=lambda: [_replace(quick={"epoch": 3})]),
            "method 'pixels-two' whose quick settings are invalid: The quick settings of "
            "'pixels-two' set 'epoch' (did you mean 'epochs'?); they may set recipe fields and "
            "model options only.",
        ),
        (
            local(benchmark_models=lambda: [_replace(quick={"model": {"width": 3}})]),
            "Unknown setting 'model.width'",
        ),
        (
            local(benchmark_models=lambda: [_replace(card={**_card(), "year": 2020})]),
            "invalid ModelCard (year: Unexpected keyword argument)",
        ),
    ],
    ids=[
        "misspelled-hook",
        "wrong-signature",
        "returns-dict",
        "returns-wrong-spec",
        "hook-raises",
        "no-tiny-variant",
        "bad-name",
        "bad-quick-key",
        "bad-quick-option",
        "extra-card-field",
    ],
)
def test_a_faulty_package_fails_alone_with_its_name(plugin: Any, message: str) -> None:
    reg = build_registry(extra=[("faulty", plugin), ("fine", local(benchmark_models=_pixels()))])
    assert message in reg.load_errors["faulty"]
    assert reg.load_errors["faulty"].startswith("Package <local> - (entry point faulty)")
    assert reg.model("pixels-two").name == "pixels-two"  # the other packages still load
    assert reg.model("safa").name == "safa"
    assert reg.pm.get_plugin("faulty") is None  # none of its hooks will be called


def _fields() -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(RAW_PIXELS, f.name) for f in dataclasses.fields(RAW_PIXELS)}


def _card() -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(RAW_PIXELS.card)


def _replace(**changes: Any) -> Any:
    import dataclasses

    if "card" in changes:
        changes["card"] = api.ModelCard(**changes["card"])
    return dataclasses.replace(RAW_PIXELS, name="pixels-two", **changes)


def test_an_unmarked_hook_is_still_a_hook_and_a_misspelled_one_an_error() -> None:
    reg = build_registry(
        extra=[
            ("plain", local(benchmark_models=_pixels())),
            ("typo", local(benchmark_loses=lambda: [])),
        ]
    )
    assert reg.model("pixels-two").name == "pixels-two"
    assert (
        "unknown hooks: benchmark_loses (did you mean benchmark_losses?)" in reg.load_errors["typo"]
    )


def test_a_spec_invalid_at_import_fails_its_package_when_it_loads(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = pixels_module(
        "x-pixels", extra="SPEC = dataclasses.replace(RAW_PIXELS, variants={'paper': {}})"
    )
    write_package(
        site,
        "no-tiny",
        "2.0",
        {
            "cvgl_benchmark": {"no_tiny": "no_tiny_mod"},
            "cvgl_benchmark.methods": {"x": "no_tiny_mod"},
        },
        {"no_tiny_mod": source},
    )
    allow(monkeypatch, "no_tiny")
    reg = build_registry()
    with pytest.raises(api.BenchmarkError) as err:
        reg.model("x")
    assert str(err.value) == (
        "The method 'x' cannot be used: Package no-tiny 2.0 (entry point no_tiny) has an "
        "invalid ModelSpec (variants: missing 'tiny': every method has 'paper' (its paper's "
        "configuration, usually {}) and 'tiny' (the same code path narrowed to train on a "
        "CPU; the quick regime uses it))."
    )


@pytest.mark.parametrize(
    ("declared", "returned", "message"),
    [
        ({"x-pixels"}, ["y-pixels"], "declares 'x-pixels' but does not return it; returns"),
        ({"x-pixels"}, ["x-pixels"], ""),
    ],
)
def test_declared_names_must_be_what_the_hooks_return(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    declared: set[str],
    returned: list[str],
    message: str,
) -> None:
    module = f"declared_{returned[0].replace('-', '_')}_mod"
    write_package(
        site,
        "declared",
        "1.0",
        {
            "cvgl_benchmark": {"declared": module},
            "cvgl_benchmark.methods": dict.fromkeys(declared, module),
        },
        {module: pixels_module(*returned)},
    )
    allow(monkeypatch, "declared")
    reg = build_registry()
    assert reg.names("models") == sorted({*PROJECT_METHODS, *declared})  # read, not imported
    reg.all("models")
    assert message in reg.load_errors.get("declared", "")
    if message:
        assert "x-pixels" not in reg.names("models")


PROJECT_METHODS = {"aenet", "cvm-net", "l2ltr", "raw-pixels", "safa", "saig", "vigor"}


def test_an_observer_must_be_declared_so_that_runs_load_it(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = pixels_module("obs-pixels", extra="def benchmark_on_result(result, path): pass")
    entry = {
        "cvgl_benchmark": {"obs": "obs_mod"},
        "cvgl_benchmark.methods": {"obs-pixels": "obs_mod"},
    }
    write_package(site, "observing", "1.0", entry, {"obs_mod": source})
    allow(monkeypatch, "obs")
    reg = build_registry()
    reg.hook  # noqa: B018 - loads every package that may observe a run
    assert "obs" not in reg.load_errors  # not loaded: it did not say it observes
    with pytest.raises(api.BenchmarkError, match="implements benchmark_on_result but does not"):
        reg.model("obs-pixels")


def test_observer_hooks_take_the_method_and_warn_on_the_deprecated_plugin_argument() -> None:
    seen: list[tuple[str, int]] = []
    modern = local(benchmark_on_epoch_end=lambda method, epoch: seen.append((method, epoch)))
    with pytest.warns(DeprecationWarning, match="take 'method'"):
        reg = build_registry(
            extra=[("modern", modern), ("old", local(benchmark_on_epoch_end=lambda plugin: None))]
        )
    reg.hook.benchmark_on_epoch_end(method="safa", plugin="safa", epoch=2, logs={})
    assert seen == [("safa", 2)]
    assert hookspecs.OBSERVERS == ("benchmark_on_epoch_end", "benchmark_on_result")


# --- a broken package next to a good one -----------------------------------------------


def test_run_records_a_broken_package_and_still_runs_the_good_method(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_package(
        site,
        "broken-plugin",
        "0.1",
        {
            "cvgl_benchmark": {"broken_pkg": "broken_pkg_mod"},
            "cvgl_benchmark.methods": {"broken": "broken_pkg_mod"},
        },
        {"broken_pkg_mod": 'raise RuntimeError("broken on purpose")\n'},
    )
    allow(monkeypatch, "broken_pkg")
    reg = build_registry()
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    world = [
        f"--set=dataset_options.{k}={json.dumps(v)}".replace(" ", "") for k, v in TINY_WORLD.items()
    ]
    args = [
        "run",
        "--plugins",
        "broken,raw-pixels",
        "--device",
        "cpu",
        "--results-dir",
        str(tmp_path),
    ]
    assert cli.main([*args, "--set", "profile=false", *world]) == 1
    found = {r.plugin: r for r in map(RunResult.model_validate_json, _texts(tmp_path))}
    broken, good = found["broken"], found["raw-pixels"]
    assert broken.status == "failed" and good.status == "ok"
    assert broken.error == (
        "The method 'broken' cannot be used: Package broken-plugin 0.1 (entry point "
        "broken_pkg) failed to import (RuntimeError: broken on purpose)."
    )
    assert (broken.plugin_package.package, broken.plugin_package.version) == (
        "broken-plugin",
        "0.1",
    )
    assert (good.plugin_package.package, good.plugin_package.version) == (
        "cvgl-benchmark",
        __version__,
    )


def _texts(folder: Path) -> list[str]:
    return [p.read_text() for p in sorted(folder.glob("*.json"))]


# --- clashes: built-ins are never replaced ---------------------------------------------


def test_a_builtin_entry_point_or_name_is_never_replaced(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    write_package(  # the same entry-point name as the built-in SAFA, and its method name
        site,
        "evil-safa",
        "6.6",
        {
            "cvgl_benchmark": {"safa": "evil_safa_mod"},
            "cvgl_benchmark.methods": {"safa": "evil_safa_mod"},
        },
        {"evil_safa_mod": 'raise AssertionError("never imported")\n'},
    )
    write_package(  # another entry-point name, an undeclared method called like a built-in
        site,
        "shadow",
        "1.0",
        {"cvgl_benchmark": {"shadow": "shadow_mod"}},
        {"shadow_mod": pixels_module("raw-pixels", "shadow-pixels")},
    )
    allow(monkeypatch, "safa", "shadow")  # the allow-list names entry points: safa is the built-in
    reg = build_registry()
    assert reg.names("models") == sorted({*PROJECT_METHODS, "shadow-pixels"})
    for method in ("safa", "raw-pixels"):
        assert reg.info("models", method).package == "cvgl-benchmark"
    assert reg.model("safa").card.venue == "NeurIPS 2019"
    assert reg.model("raw-pixels").build is RAW_PIXELS.build
    assert reg.model("shadow-pixels").name == "shadow-pixels"
    assert "evil_safa_mod" not in sys.modules
    err = capsys.readouterr().err
    assert (
        "Package evil-safa 6.6 (entry point safa) is not loaded: its entry-point name 'safa' is "
        "also used by package cvgl-benchmark" in err
    )
    assert (
        "Package shadow 1.0 (entry point shadow) also provides the method 'raw-pixels', which "
        "is built into package cvgl-benchmark" in err
    )


def test_a_name_two_other_packages_claim_is_unusable_until_one_is_left_out(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for dist in ("one", "two"):
        write_package(
            site,
            f"twin-{dist}",
            "1.0",
            {
                "cvgl_benchmark": {f"twin_{dist}": f"twin_{dist}_mod"},
                "cvgl_benchmark.methods": {"twin": f"twin_{dist}_mod"},
            },
            {f"twin_{dist}_mod": pixels_module("twin")},
        )
    allow(monkeypatch, "twin_one", "twin_two")
    with pytest.raises(api.BenchmarkError) as err:
        build_registry().model("twin")
    assert "provided by package twin-one 1.0 (entry point twin_one) and by package twin-two" in str(
        err.value
    )
    allow(monkeypatch, "twin_two")
    reg = build_registry()
    assert reg.info("models", "twin").package == "twin-two" and reg.model("twin").name == "twin"


# --- output and laziness -----------------------------------------------------------------


def test_a_package_that_prints_at_import_does_not_corrupt_json_output(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    source = pixels_module("chatty-pixels", extra='print("hello from chatty")')
    write_package(
        site, "chatty", "1.0", {"cvgl_benchmark": {"chatty": "chatty_mod"}}, {"chatty_mod": source}
    )
    allow(monkeypatch, "chatty")  # undeclared: list must import it to know its names
    reg = build_registry()
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    assert cli.main(["list", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "chatty-pixels" in json.loads(out)["methods"]
    assert "hello from chatty" in err


def _subprocess(site: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    # run from SITE (first on sys.path): metadata a build left in ROOT must not shadow it;
    # a hang would end in TimeoutExpired: listing itself takes about a second
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(code)],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_and_show_do_not_import_unneeded_packages_even_one_that_hangs(site: Path) -> None:
    source = pixels_module("sleepy", extra="import time\ntime.sleep(3600)")
    entry = {
        "cvgl_benchmark": {"sleepy": "sleepy_mod"},
        "cvgl_benchmark.methods": {"sleepy": "sleepy_mod"},
    }
    write_package(site, "sleepy", "1.0", entry, {"sleepy_mod": source})
    env = site_env(site, f"{PROJECT_PLUGINS},sleepy")
    listing = _subprocess(
        site,
        env,
        """
        import json, sys
        from benchmark.cli import main
        main(["list", "--format", "json"])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "plugins"))
        print(json.dumps(heavy))
        """,
    )
    assert listing.returncode == 0, listing.stderr
    names, heavy = map(json.loads, listing.stdout.splitlines())
    assert "sleepy" in names["methods"] and "safa" in names["methods"]
    assert heavy == []  # neither torch nor any plugin module was imported to list names
    show = _subprocess(
        site, env, "from benchmark.cli import main; raise SystemExit(main(['show', 'safa']))"
    )
    assert show.returncode == 0 and "NeurIPS 2019" in show.stdout, show.stderr


def test_the_builtins_declare_exactly_what_their_hooks_return(site: Path) -> None:
    reg = build_registry()
    for kind in registry_module.KINDS:
        assert reg.all(kind)
    reg.hook  # noqa: B018 - loads the observers, if any
    assert reg.load_errors == {}
    assert {p.info.name: p.state for p in reg.plugins} == dict.fromkeys(
        PROJECT_PLUGINS.split(","), "loaded"
    )


def test_every_public_name_is_documented() -> None:
    """docs/PLUGINS.md's table names everything benchmark.api exports."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "PLUGINS.md").read_text()
    assert [name for name in api.__all__ if f"`{name}`" not in text] == []
