"""Result files -> one frame row per accepted run: the table every later step reads.

A file is rejected (with a warning naming it) when it is not a result or breaks a rule of
``validate.py``; a run present twice (the same file name, e.g. a copy in a subfolder) counts
once, the copy nearest the results folder, with a warning for the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.leaderboard.validate import problems
from benchmark.reported import model_overrides
from benchmark.results import VAL_KEY, RunResult, read_all

PROFILE = (("params_m", "params M", 2), ("gmacs", "GMACs", 2), ("latency_ms", "latency ms", 1))
NOT_TRAINED = "- (not trained)"  # the loss cell of a run that trained nothing
METRIC = "m:"  # prefix of the frame's metric columns, so no metric key clashes with another
SECTION_KEYS = ["dataset", "split"]
# Config fields a row is keyed by elsewhere (method, variant, regime, seed), that choose its
# column (the protocol and its seed), or that the recorded model options already hold.
KEYED = frozenset({"plugin", "variant", "regime", "seed", "protocol", "protocol_seed", "model"})


@cache
def _infrastructure() -> frozenset[str]:
    """Config fields that say where and how a run ran, not what it measured: their role
    (benchmark/settings.py), and the data root, a path on one machine."""
    from benchmark.config import fields_with_role

    return frozenset({*fields_with_role("infrastructure"), "data_root"})


def is_infrastructure(field: str) -> bool:
    """Whether config FIELD only says where or how a run ran (not a leaderboard setting)."""
    return field in _infrastructure()


@cache
def _defaults() -> dict[str, Any]:
    """The harness's default of each config field, so a field a result predates counts as
    its default instead of a setting of its own."""
    from benchmark.config import RunConfig

    values = {
        name: field.get_default(call_default_factory=True)
        for name, field in RunConfig.model_fields.items()
        if not field.is_required()
    }
    return json.loads(json.dumps(values, default=str))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        for key in sorted(value):
            _flatten(f"{prefix}{key}.", value[key], out)
    else:
        out[prefix.rstrip(".")] = value
    return out


def settings(result: RunResult) -> dict[str, Any]:
    """What a run's numbers depend on besides method, variant, regime and seed (flat keys):
    its outcome-relevant config fields and its model options."""
    config = {**_defaults(), **result.config}
    outcome = {k: v for k, v in config.items() if k not in KEYED and not is_infrastructure(k)}
    return _flatten("model.", result.model_options, _flatten("", outcome, {}))


def _size(value: Any) -> str:
    return f"{value[0]}x{value[1]}" if isinstance(value, list | tuple) and len(value) == 2 else "?"


def _metrics(r: RunResult) -> dict[str, Any]:
    """The frame's metric columns: every number, and every declared curve as JSON."""
    curves = {d.key for d in r.display if d.y is not None}
    out: dict[str, Any] = {}
    for key, value in r.metrics.items():
        if key in curves and isinstance(value, Mapping):
            out[METRIC + key] = json.dumps(value, sort_keys=True)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[METRIC + key] = value
    return out


def _validation_curve(r: RunResult) -> str | None:
    """The run's validation R@1 after each epoch against the training pairs seen by then, as
    JSON, when its history records both."""
    history = r.training.get("history") or []
    points = [(h["pairs_seen"], h[VAL_KEY]) for h in history if "pairs_seen" in h and VAL_KEY in h]
    if not points or len(points) != len(history):
        return None
    return json.dumps({"pairs": [p for p, _ in points], "R@1": [v for _, v in points]})


def run_row(path: Path, r: RunResult) -> dict[str, Any]:
    """The frame row of the result R read from PATH."""
    opts, prep = r.model_options, r.preprocessing
    polar = prep.get("polar", opts.get("polar"))
    ground = prep.get("ground_size", opts.get("ground_size"))
    aerial = prep.get("aerial_size", opts.get("aerial_size"))
    row = {
        "file": path.name,
        "stem": path.stem,
        "parent": r.parent,
        "finished": r.finished,
        "card": r.card,
        "display": tuple(r.display),
        "dataset": r.dataset,
        "split": r.split,
        "protocol": r.protocol,
        "protocol_seed": r.config.get("protocol_seed"),
        "method": r.plugin,
        "variant": r.variant,
        "regime": r.regime,
        "seed": r.seed,
        "status": r.status,
        "error": (r.error or "").strip().splitlines()[0] if r.error else "",
        "settings": json.dumps(settings(r), sort_keys=True, default=str),
        "polar": "-" if polar is None else ("yes" if polar else "no"),
        "loss": r.config.get("loss", "-") if r.training.get("epochs_completed") else NOT_TRAINED,
        "input": f"{_size(ground)} / {_size(aerial)}",
        "device": r.env.get("device", r.config.get("device", "-")),
        "threads": r.env.get("threads"),
        "epochs": r.config.get("epochs"),
        "batch_size": r.config.get("batch_size"),
        "optimizer": r.config.get("optimizer"),
        "lr": r.config.get("lr"),
        "schedule": r.config.get("schedule"),
        "limit": r.config.get("limit"),
        "train_pairs": r.dataset_info.get("train_pairs"),
        "test_queries": r.dataset_info.get("test_queries"),
        "test_references": r.dataset_info.get("test_references"),
        "dataset_options": json.dumps(r.config.get("dataset_options", {}), sort_keys=True),
        "descriptor_dim": r.profile.get("descriptor_dim"),
        "curve": _validation_curve(r),
        "model_settings": json.dumps(
            {"model_options": r.model_options}, sort_keys=True, default=str
        ),
        "model_overrides": json.dumps(
            model_overrides(r.config.get("model") or {}), sort_keys=True, default=str
        ),
        **_metrics(r),
    }
    for key, _, _ in PROFILE:
        row[key] = r.profile.get(key)
    row["load_per_core"] = r.profile.get("load_per_core")
    return row


def _accepted(found: dict[Path, RunResult], results_dir: Path) -> tuple[dict, list[str]]:
    """FOUND without invalid results and without second copies of a run, and why not."""
    warnings, kept = [], {}
    for path, result in found.items():
        wrong = problems(result)
        if wrong:
            warnings.append(f"rejected {path}: " + "; ".join(wrong[:3]))
        else:
            kept[path] = result
    chosen: dict[str, Path] = {}
    for path in sorted(kept, key=lambda p: (len(p.relative_to(results_dir).parts), str(p))):
        first = chosen.setdefault(path.name, path)
        if first != path:
            same = "a copy" if kept[path] == kept[first] else "a different record"
            warnings.append(f"ignored {path}: {same} of the run in {first}, counted once")
    return {path: kept[path] for path in sorted(chosen.values())}, warnings


def collect(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per accepted result file, and a warning for each file that is not accepted."""
    found, warnings = read_all(results_dir)
    accepted, more = _accepted(found, Path(results_dir))
    df = pd.DataFrame([run_row(path, r) for path, r in accepted.items()])
    if not df.empty:
        df = df.sort_values(
            [*SECTION_KEYS, "protocol", "method", "variant", "regime", "seed", "file"]
        )
        df = df.reset_index(drop=True)
    return df, warnings + more
