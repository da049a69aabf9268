"""``python -m benchmark leaderboard migrate``: rewrite older result files as current ones,
once: the schema (filling what the read-time migration cannot: the card and package of
the method's installed plugin, and the parent of each evaluation of a run's checkpoint)
and the name of a renamed method, the file and its companions renamed with it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmark import results, schema


def _stale(results_dir: Path) -> list[Path]:
    """The result files under RESULTS_DIR written with an older schema or under a method's
    old name."""
    stale = []
    for path in sorted(results_dir.rglob("*.json")):
        if "checkpoints" in path.relative_to(results_dir).parts:
            continue
        if path.name.endswith(results.ATTEMPT_SUFFIXES):
            continue  # moved with the result it is an attempt of
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and (
                schema.version_of(data) < schema.SCHEMA_VERSION or schema.renamed(data)
            ):
                stale.append(path)
        except (OSError, ValueError):
            continue  # not a result file: the leaderboard names it
    return stale


def _fill(result: results.RunResult, path: Path, reg: Any) -> bool:
    """Fill RESULT's missing card and package from the installed plugin and its missing
    parent from the folder; False when its method is not installed here."""
    if result.card is None or result.plugin_package is None:
        spec = reg.models.get(result.plugin)
        origin = reg.provenance(result.plugin)
        if spec is None or origin.package == "?":
            return False
        result.card = result.card or results.CardSnapshot.of(spec.card)
        result.plugin_package = result.plugin_package or results.PluginPackage.of(origin)
    weights = result.training.get("weights")
    if result.parent is None and isinstance(weights, str) and weights:
        result.parent = results.producer_of(Path(weights), path.parent)
    return True


def _move(path: Path, stem: str) -> None:
    """Rename the companions of the result at PATH (log, ranks, descriptors, attempts) to
    STEM; locks are left (a run holding one is not finished)."""
    for companion in sorted(path.parent.glob(f"{path.stem}.*")):
        if companion != path and not companion.name.endswith(".lock"):
            os.replace(companion, path.with_name(stem + companion.name[len(path.stem) :]))


def migrate_command(results_dir: Path) -> int:
    """Rewrite RESULTS_DIR's older result files; print what was filled or renamed."""
    from benchmark.registry import registry

    folder = Path(results_dir)
    missing: dict[str, int] = {}
    kept: dict[Path, results.RunResult] = {}
    for path in _stale(folder):
        result = results.load(path)
        if _fill(result, path, registry()):
            kept[path] = result
        else:
            missing[result.plugin] = missing.get(result.plugin, 0) + 1
    renamed: dict[str, str] = {}
    for path, result in kept.items():
        if not result.run_id or result.stem() == path.stem:
            continue
        if path.with_name(result.filename()).exists():
            print(
                f"warning: {path} was left under its old name: {result.filename()} (the same "
                "run, recorded under the new name) is there. Remove the one to drop.",
                file=sys.stderr,
            )
            continue
        renamed[path.stem] = result.stem()
    others = [
        p
        for p in folder.glob("*.json")
        if p not in kept and not p.name.endswith(results.ATTEMPT_SUFFIXES)
    ]
    for path in others:  # evaluations of a renamed run, themselves current
        try:
            result = results.load(path)
        except (OSError, ValueError):
            continue
        if result.parent in renamed:
            kept[path] = result
    for path, result in kept.items():
        result.parent = renamed.get(result.parent or "", result.parent)
        stem = renamed.get(path.stem, path.stem)
        result.files = {k: stem + v[len(path.stem) :] if v.startswith(path.stem) else v
                        for k, v in result.files.items()}  # fmt: skip
        target = path.with_name(stem + ".json")
        results.dump(result, target)
        if target != path:
            _move(path, stem)
            path.unlink()
        package = result.plugin_package
        source = f"card of {package.package} {package.version}" if package else "no package"
        moved = f", now {target.name}" if target != path else ""
        print(f"migrated {path} ({source}, parent {result.parent or '-'}{moved})")
    for name, count in sorted(missing.items()):
        print(
            f"warning: method {name!r} is not installed here, so {count} of its result files "
            "were left as they are (read without a card); install its plugin and run this again.",
            file=sys.stderr,
        )
    print(f"{len(kept)} file(s) migrated to schema {schema.SCHEMA_VERSION}.")
    return 1 if missing else 0
