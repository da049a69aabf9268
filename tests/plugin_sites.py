"""Installed-package fixtures: a site directory holding distributions as pip lays them out
(``NAME-VERSION.dist-info`` with METADATA and entry_points.txt, plus their modules)."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_package(
    site: Path,
    dist: str,
    version: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str] | None = None,
) -> None:
    """Install distribution DIST into SITE: its entry points by group and module sources."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(source)


def harness_entry_points() -> dict[str, dict[str, str]]:
    """The entry points this checkout's pyproject.toml declares (what pip would install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"]


def install_harness(site: Path) -> None:
    """The harness's metadata as installed from this checkout (its code stays in ROOT)."""
    from benchmark import __version__

    write_package(site, "cvgl-benchmark", __version__, harness_entry_points())


def site_env(site: Path, allow: str | None = None) -> dict[str, str]:
    """Environment of a subprocess that sees SITE before everything else installed."""
    env = dict(os.environ)
    path = [str(site), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    if allow is None:
        env.pop("CVGL_BENCHMARK_PLUGINS", None)
    else:
        env["CVGL_BENCHMARK_PLUGINS"] = allow
    return env


PYTHON = sys.executable
