"""A third-party plugin package, installed with pip, passes its own tests and runs through the
CLI onto the leaderboard; a broken or clashing package is named in a clear message while the
others keep working, and a built-in is never replaced."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_WORLD

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cvgl-example-gem"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _env(site: Path, *plugins: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CVGL_BENCHMARK_PLUGINS"] = ",".join([os.environ["CVGL_BENCHMARK_PLUGINS"], *plugins])
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package pip-installed (offline, no dependencies) into a private site dir.

    A private --target keeps the shared environment untouched, so concurrent test runs never
    see a half-installed plugin; teardown removes it with the temporary directory.
    """
    tmp = tmp_path_factory.mktemp("third_party")
    source = shutil.copytree(
        EXAMPLE, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    target = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target"]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-build-isolation")
    subprocess.run([*cmd, str(target), str(source)], check=True, timeout=300)
    yield target
    shutil.rmtree(tmp, ignore_errors=True)


def test_installed_example_lists_runs_and_reaches_the_leaderboard(
    site: Path, tmp_path: Path
) -> None:
    env = _env(site, "example_gem")
    listing = _cli(env, "list")
    assert listing.returncode == 0, listing.stderr
    line = next(x for x in listing.stdout.splitlines() if "example-gem" in x)
    assert "cvgl-example-gem 0.1.0 (entry point example_gem)" in line

    results = tmp_path / "results"
    sets = [f"--set=dataset_options.{k}={v}" for k, v in TINY_WORLD.items()]
    sets = [s.replace(" ", "") for s in sets]
    run = _cli(
        env, "run", "--plugins", "example-gem", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu", "--results-dir", str(results), "--set", "profile=false", *sets,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (found,) = results.glob("synthetic-test__example-gem-tiny-quick-seed0-*.json")
    result = json.loads(found.read_text())
    package = result["plugin_package"]
    assert (package["package"], package["version"]) == ("cvgl-example-gem", "0.1.0")

    page = tmp_path / "page" / "LEADERBOARD.md"
    board = _cli(env, "leaderboard", "--results-dir", str(results), "--output", str(page))
    assert board.returncode == 0, board.stderr
    text = page.read_text()
    row = next(x for x in text.splitlines() if x.startswith("| [example-gem]"))
    assert "| tiny " in row and "| quick " in row
    assert "[example-gem]: https://arxiv.org/abs/1711.02512" in text
    assert (page.parent / "plots" / "recall-synthetic-test.png").stat().st_size > 0


def test_the_example_package_passes_its_own_tests(site: Path, tmp_path: Path) -> None:
    env = _env(site, "example_gem")
    env["CVGL_BENCHMARK_CACHE"] = str(tmp_path / "cache")
    tests = tmp_path / "src" / "tests"
    shutil.copytree(EXAMPLE, tmp_path / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout


def test_broken_and_clashing_plugins_are_named_and_the_others_still_load(
    site: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad_site"
    bad.mkdir()
    (bad / "broken_plugin.py").write_text('raise RuntimeError("broken on purpose")\n')
    (bad / "clash_plugin.py").write_text(
        "from dataclasses import replace\n"
        "from benchmark.api import hookimpl\n"
        "from cvgl_example_gem import SPEC\n\n\n"
        "@hookimpl\n"
        "def benchmark_models():\n"
        '    return [replace(SPEC, name="safa")]\n'
    )
    for dist, module in (("broken-plugin", "broken_plugin"), ("clash-plugin", "clash_plugin")):
        info = bad / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[cvgl_benchmark]\n{module} = {module}\n")
    env = _env(site, "example_gem", "broken_plugin", "clash_plugin")
    env["PYTHONPATH"] = os.pathsep.join([str(bad), env["PYTHONPATH"]])
    listing = _cli(env, "list")
    assert listing.returncode == 0, listing.stderr
    assert (
        "Package broken-plugin 0.1 (entry point broken_plugin) failed to import (RuntimeError: "
        "broken on purpose). The other plugin packages still work." in listing.stderr
    )
    assert (
        "Package clash-plugin 0.1 (entry point clash_plugin) also provides the method 'safa', "
        "which is built into package cvgl-benchmark" in listing.stderr
    )
    methods = listing.stdout.split("datasets:")[0]
    assert "example-gem" in methods and "cvm-net" in methods
    assert "  safa                     cvgl-benchmark " in methods  # the built-in stays
