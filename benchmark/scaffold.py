"""``python -m benchmark new-plugin NAME``: a working plugin package skeleton, written from the
templates in ``benchmark/templates/plugin`` (shipped as package data): a pyproject with the
entry points, a model built on ``benchmark.api`` only, its card, and tests that run the
conformance check."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from benchmark import __version__
from benchmark.errors import BenchmarkError

TEMPLATES = Path(__file__).parent / "templates" / "plugin"
# A method name from which a distribution, a module and an entry point can all be derived.
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def plugin_names(method: str) -> dict[str, str]:
    """What the skeleton of METHOD is called: its method, distribution, module and entry
    point (e.g. my-net: cvgl-my-net, cvgl_my_net, my_net)."""
    entry = method.replace("-", "_")
    return {
        "method": method,
        "package": f"cvgl-{method.replace('_', '-')}",
        "module": f"cvgl_{entry}",
        "entry": entry,
        "harness_version": __version__,
    }


def check_plugin_name(method: str, installed: list[str]) -> None:
    """Refuse a NAME that cannot name a package, or that an INSTALLED method already has."""
    if not PLUGIN_NAME.fullmatch(method):
        raise BenchmarkError(
            f"{method!r} cannot name a plugin: use 1 to 64 lowercase letters, digits, '-' or "
            "'_', starting with a letter (e.g. my-net)."
        )
    if method in installed:
        raise BenchmarkError(
            f"A method named {method!r} is already installed; choose another name "
            "(`python -m benchmark list` shows the taken ones)."
        )


def write_plugin(method: str, folder: Path) -> list[Path]:
    """Write the skeleton of METHOD into FOLDER (absent or empty); return the files written."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BenchmarkError(
            f"{str(folder)!r} exists and is not an empty folder; choose another --dir or "
            "remove it first."
        )
    names = plugin_names(method)
    written = []
    try:
        for template in sorted(TEMPLATES.rglob("*.tmpl")):
            relative = template.relative_to(TEMPLATES).with_suffix("")
            parts = [p.replace("MODULE", names["module"]) for p in relative.parts]
            path = folder.joinpath(*(p.replace("ENTRY", names["entry"]) for p in parts))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(Template(template.read_text()).substitute(names))
            written.append(path)
    except OSError as exc:
        raise BenchmarkError(
            f"Could not write the plugin into {str(folder)!r} ({exc.strerror or exc}); choose "
            "a writable --dir."
        ) from None
    return written


def new_plugin_command(method: str, folder: Path | None) -> int:
    """Write the skeleton of METHOD (into ./cvgl-METHOD unless FOLDER) and say what next."""
    from benchmark.registry import registry

    check_plugin_name(method, registry().names("models"))
    folder = folder or Path(plugin_names(method)["package"])
    for path in write_plugin(method, folder):
        print(f"wrote {path}")
    print(
        f"\nNext: pip install -e {folder} && python -m pytest {folder}/tests\n"
        f"then: python -m benchmark run --plugins {method} --epochs 1 "
        "--set dataset_options.n_train=64"
    )
    return 0
