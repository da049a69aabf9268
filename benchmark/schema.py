"""Result file schema versions, and the read-time migration of files written by older ones.

Schema 1 (no ``schema_version`` key): the files written before results carried what the
leaderboard needs. Schema 2 adds ``card`` (a snapshot of the method's card),
``plugin_package``, ``display`` (how each metric key is shown), ``parent`` (the run whose
weights a protocol evaluation scored) and ``migrated_from`` (the schema a migrated file was
written with). A schema-1 file is read as schema 2 without any
plugin: it gets the display declarations of the metrics the core shipped with schema 1 and
no card, package or parent (``python -m benchmark leaderboard migrate`` fills those once,
from the installed plugins and the folder, and rewrites the files).

Whatever its schema, a file recorded under a method's old name (benchmark/renames.py) is
read under the current one, its run id the hash of its identity with that name; ``migrate``
rewrites such files under their current names.
"""

from __future__ import annotations

from typing import Any

from benchmark.identity import digest
from benchmark.renames import RENAMED_METHODS

SCHEMA_VERSION = 2


def _percent(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "unit": "%", "bounds": [0.0, 100.0], **fields}


# The core metrics of schema 1 (recall, hit-rate, metre-accuracy), as they were displayed.
SCHEMA1_DISPLAY: tuple[dict[str, Any], ...] = (
    _percent("R@1", rank=True, plot="recall", x=1),
    _percent("R@5", plot="recall", x=5),
    _percent("R@10", plot="recall", x=10),
    _percent("R@1%", plot="recall", x="R@1%_k"),
    _percent("hit_rate", label="hit rate"),
    *(_percent(f"acc@{d}m", column=d == 10, plot="metres", x=d) for d in (1, 5, 10, 25, 50, 100)),
    {
        "key": "median_error_m",
        "label": "median error m",
        "unit": "m",
        "higher_is_better": False,
        "bounds": [0.0, None],
    },
    _percent("accuracy_curve", column=False, plot="metres", x="thresholds_m", y="accuracy"),
)


def _from_1(data: dict[str, Any]) -> dict[str, Any]:
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    display = [d for d in SCHEMA1_DISPLAY if d["key"] in metrics]
    new = {"card": None, "plugin_package": None, "display": display, "parent": None}
    return {**data, **new}


MIGRATIONS = {1: _from_1}  # version -> function returning the data of version + 1


def version_of(data: dict[str, Any]) -> int:
    """The schema version of a result file's data (1 when it has none)."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"schema_version must be a positive integer, got {version!r}")
    return version


def renamed(data: dict[str, Any]) -> bool:
    """Whether DATA was recorded under a method's old name."""
    return data.get("plugin") in RENAMED_METHODS


def _current_names(data: dict[str, Any]) -> dict[str, Any]:
    """DATA under its method's current name: the method, its config and identity, and the
    run id hashed over that identity (the files it names keep their names)."""
    if not renamed(data):
        return data
    new = RENAMED_METHODS[data["plugin"]]
    out = {**data, "plugin": new}
    for key in ("config", "identity"):
        if isinstance(data.get(key), dict) and "plugin" in data[key]:
            out[key] = {**data[key], "plugin": new}
    identity = data.get("identity")
    if identity and data.get("run_id") == digest(identity):
        out["run_id"] = digest(out["identity"])
    return out


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """DATA of any known schema version as the current one, under current method names;
    newer versions are an error."""
    version = version_of(data)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"schema {version} is newer than this harness reads ({SCHEMA_VERSION}); "
            "upgrade cvgl-benchmark"
        )
    if version < SCHEMA_VERSION:
        data = {**data, "migrated_from": version}
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    return _current_names({**data, "schema_version": SCHEMA_VERSION})
