"""``python -m benchmark leaderboard migrate``: rewrite older result files as the current
schema, once, filling what the read-time migration cannot: the card and package of the
method's installed plugin, and the parent of each evaluation of a run's checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmark import results, schema


def _older(results_dir: Path) -> list[Path]:
    """The result files under RESULTS_DIR written with an older schema."""
    older = []
    for path in sorted(results_dir.rglob("*.json")):
        if "checkpoints" in path.relative_to(results_dir).parts:
            continue
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and schema.version_of(data) < schema.SCHEMA_VERSION:
                older.append(path)
        except (OSError, ValueError):
            continue  # not a result file: the leaderboard names it
    return older


def migrate_command(results_dir: Path) -> int:
    """Rewrite RESULTS_DIR's older result files; print what was filled from where."""
    from benchmark.registry import registry

    reg = registry()
    missing: dict[str, int] = {}
    done = 0
    for path in _older(Path(results_dir)):
        result = results.load(path)
        spec = reg.models.get(result.plugin)
        origin = reg.provenance(result.plugin)
        if spec is None or origin.package == "?":
            missing[result.plugin] = missing.get(result.plugin, 0) + 1
            continue
        result.card = results.CardSnapshot.of(spec.card)
        result.plugin_package = results.PluginPackage.of(origin)
        weights = result.training.get("weights")
        if isinstance(weights, str) and weights:
            result.parent = results.producer_of(Path(weights), path.parent)
        results.dump(result, path)
        done += 1
        source = f"card of {origin.package} {origin.version}"
        print(f"migrated {path} ({source}, parent {result.parent or '-'})")
    for name, count in sorted(missing.items()):
        print(
            f"warning: method {name!r} is not installed here, so {count} of its result files "
            "were left as they are (read without a card); install its plugin and run this again.",
            file=sys.stderr,
        )
    print(f"{done} file(s) migrated to schema {schema.SCHEMA_VERSION}.")
    return 1 if missing else 0
