"""`new-plugin` writes a package that passes its own tests as written: its plugin module is
registered here as pip would make it found, and its test module runs the conformance check."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from benchmark import registry as registry_module
from benchmark.cli import main
from benchmark.registry import build_registry
from benchmark.scaffold import TEMPLATES

ROOT = Path(__file__).resolve().parent.parent


def test_the_skeleton_passes_its_own_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "pkg"
    assert main(["new-plugin", "scaffold-check", "--dir", str(folder)]) == 0
    assert f"wrote {folder / 'pyproject.toml'}" in capsys.readouterr().out
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == "cvgl-scaffold-check"
    groups = project["entry-points"]
    assert groups["cvgl_benchmark"] == {"scaffold_check": "cvgl_scaffold_check"}
    assert groups["cvgl_benchmark.methods"] == {"scaffold-check": "cvgl_scaffold_check"}
    sources = [p.read_text() for p in folder.rglob("*.py")]
    imports = [line for text in sources for line in text.splitlines() if "benchmark" in line]
    assert all("benchmark.api" in line for line in imports if "import" in line)

    monkeypatch.syspath_prepend(str(folder / "src"))
    try:
        plugin = importlib.import_module("cvgl_scaffold_check")  # what the entry point names
        reg = build_registry(extra=[("scaffold_check", plugin)])
        assert not reg.load_errors
        monkeypatch.setattr(registry_module, "registry", lambda: reg)
        path = folder / "tests" / "test_scaffold_check.py"
        spec = importlib.util.spec_from_file_location("generated_tests", path)
        tests = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tests)
        names = [n for n in dir(tests) if n.startswith("test_")]
        assert "test_method_conforms_to_the_plugin_contract" in names
        for name in names:
            getattr(tests, name)()
    finally:
        for name in [m for m in sys.modules if m.startswith("cvgl_scaffold_check")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new-plugin", "My.Net"], "'My.Net' cannot name a plugin"),
        (["new-plugin", "safa"], "A method named 'safa' is already installed"),
        (["new-plugin", "fresh", "--dir", "{taken}"], "exists and is not an empty folder"),
    ],
)
def test_a_bad_name_or_a_used_folder_is_refused_before_writing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    argv = [a.format(taken=taken) for a in argv]
    assert main([*argv, *([] if "--dir" in argv else ["--dir", str(tmp_path / "new")])]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_the_templates_are_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    (pattern,) = tool["package-data"]["benchmark"]
    shipped = set((ROOT / "benchmark").glob(pattern))
    assert shipped and shipped == {p for p in TEMPLATES.rglob("*") if p.is_file()}
