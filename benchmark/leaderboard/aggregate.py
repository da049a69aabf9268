"""Frame rows of one dataset/split -> leaderboard rows: mean, 95% interval and count of every
metric per (method, variant, regime, settings), labelled and ranked by the declared ranking
key, with the per-seed values a test of two rows needs."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from benchmark.leaderboard.figures import Curve
from benchmark.leaderboard.frame import METRIC, NOT_TRAINED, PROFILE
from benchmark.specs import MetricDisplay
from benchmark.stats import mean_interval

ROW_KEYS = ["method", "variant", "regime", "settings"]
ALIGNED = "aligned"
UNKNOWN = "unknown-orientation"
Stats = tuple[float, float, int]
# A latency timed while the 1-minute load average exceeded this many runnable tasks per core
# was measured on a busy machine: the run's own threads account for at most 1 per core, so
# above 1.5 other work shared the cores and slowed it by an unknown factor.
BUSY_LOAD = 1.5
# Settings a section's header states once, as the value most of its runs have (with every
# dataset option); a row that ran with another value names it in its setting cell.
STATED = ("epochs", "batch_size", "optimizer", "lr", "schedule", "limit")


def numbers(values: pd.Series) -> list[float]:
    """The numbers in VALUES (others dropped)."""
    return [float(v) for v in pd.to_numeric(values, errors="coerce").dropna()]


def stats(values: pd.Series) -> Stats:
    """Mean, half-width of its two-sided 95% Student-t interval (nan for one value) and count
    of the numbers in VALUES."""
    vals = numbers(values)
    if not vals:
        return math.nan, math.nan, 0
    mean, half = mean_interval(vals)
    return mean, half, len(vals)


def first(values: pd.Series) -> Any:
    """The first recorded value (profiles may be taken on one seed only), or None."""
    present = values.dropna()
    return present.iloc[0] if not present.empty else None


def protocol_order(protocol: str) -> tuple[int, float, str]:
    """Sort key of protocols: aligned, unknown-orientation, then fov by decreasing degrees."""
    if protocol.startswith("fov="):
        return 2, -float(protocol[4:]), protocol
    return {ALIGNED: 0, UNKNOWN: 1}.get(protocol, 3), 0.0, protocol


def displays(section: pd.DataFrame) -> list[MetricDisplay]:
    """The metric keys the runs of SECTION declare, once each, in the order first declared."""
    seen: dict[str, MetricDisplay] = {}
    for declared in section.display:
        for display in declared:
            seen.setdefault(display.key, display)
    return list(seen.values())


def ranking(shown: list[MetricDisplay]) -> MetricDisplay | None:
    """The key rows are ranked by: the first declared as such, else the first column."""
    columns = [d for d in shown if d.column]
    return next((d for d in shown if d.rank), columns[0] if columns else None)


def present(frame: pd.DataFrame, shown: list[MetricDisplay]) -> list[MetricDisplay]:
    """The displays of SHOWN that some run of FRAME has a value for."""
    return [d for d in shown if METRIC + d.key in frame and frame[METRIC + d.key].notna().any()]


def row_settings(section: pd.DataFrame) -> pd.Series:
    """Each run's row: its own settings, or its parent's when it evaluated the weights of a
    run of this section (its recorded ``parent``)."""
    by_stem = dict(zip(section.stem, section.settings, strict=True))
    rows = [
        by_stem.get(parent, own) if isinstance(parent, str) else own
        for parent, own in zip(section.parent, section.settings, strict=True)
    ]
    return pd.Series(rows, index=section.index, dtype=str)


def busy_load(runs: pd.DataFrame) -> float | None:
    """The highest load per core above BUSY_LOAD under which a latency of RUNS was timed,
    or None when every one was timed on a quiet machine (or the load is not recorded)."""
    timed = runs[runs.latency_ms.notna()] if "latency_ms" in runs else runs.iloc[:0]
    loads = numbers(timed.get("load_per_core", pd.Series(dtype=float)))
    return max(loads) if loads and max(loads) > BUSY_LOAD else None


def _stated(key: str) -> bool:
    return key in STATED or key.startswith("dataset_options.")


def common_settings(section: pd.DataFrame) -> dict[str, Any]:
    """The value most runs of SECTION have for each setting its header states (ties: the
    first in JSON order; None where most runs do not set it)."""
    parsed = [json.loads(s) for s in section.settings]
    common = {}
    for key in sorted({k for p in parsed for k in p if _stated(k)}):
        counts = Counter(json.dumps(p.get(key), sort_keys=True) for p in parsed)
        common[key] = json.loads(min(counts, key=lambda v: (-counts[v], v)))
    return common


def aggregate(
    section: pd.DataFrame,
    shown: list[MetricDisplay],
    tracks: list[str],
    tuned: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One row per (method, variant, regime, settings): mean/std/count of every declared
    metric under the aligned protocol and under each robustness protocol in TRACKS."""
    absent = pd.Series(dtype=float)
    scalars = [d.key for d in shown if d.y is None]
    rows = []
    for key, g in section.groupby(ROW_KEYS, sort=True):
        row: dict[str, Any] = dict(zip(ROW_KEYS, key, strict=True))
        aligned = g[g.protocol == ALIGNED]
        main = g if aligned.empty else aligned
        row["first"] = main.iloc[0]
        row.update({c: row["first"][c] for c in ("polar", "loss", "input")})
        row["descriptor_dim"] = first(g.descriptor_dim)
        row["seeds"] = len(aligned)
        row["metrics"] = {m: stats(aligned.get(METRIC + m, absent)) for m in scalars}
        row["values"] = {m: numbers(aligned.get(METRIC + m, absent)) for m in scalars}
        row["curves"] = {
            d.key: mean_curve(aligned.get(METRIC + d.key, absent), d, len(aligned))
            for d in shown
            if d.y is not None
        }
        row["profile"] = {p: stats(main[p]) for p, _, _ in PROFILE}
        row["training"] = training_curve(aligned.get("curve", absent))
        row["busy_load"] = busy_load(main)
        row["tracks"] = {
            t: {m: stats(g[g.protocol == t].get(METRIC + m, absent)) for m in scalars}
            for t in tracks
        }
        rows.append(row)
    aligned = section[section.protocol == ALIGNED]
    _label(rows, common_settings(section if aligned.empty else aligned), tuned)
    rank = ranking(shown)
    return sorted(rows, key=lambda row: _rank(row, tracks, rank))


def mean_curve(values: pd.Series, display: MetricDisplay, runs: int) -> Curve | None:
    """The RUNS' curves averaged, when every run has one on one grid."""
    curves = [json.loads(v) for v in values if isinstance(v, str)]
    if not curves or len(curves) != runs:
        return None
    grid = curves[0].get(display.x)
    if not grid or any(c.get(display.x) != grid for c in curves):
        return None
    acc = np.array([c[display.y] for c in curves], dtype=float)
    err = acc.std(axis=0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
    return Curve("", tuple(grid), tuple(acc.mean(axis=0)), tuple(err))


def training_curve(values: pd.Series) -> Curve | None:
    """The validation R@1 curves of VALUES (JSON, one per run) averaged over the runs, with
    training pairs seen as x, when every run has one on one grid."""
    curves = [json.loads(v) for v in values if isinstance(v, str)]
    if not curves or len(curves) != len(values):
        return None
    grid = curves[0]["pairs"]
    if any(c["pairs"] != grid for c in curves):
        return None
    acc = np.array([c["R@1"] for c in curves], dtype=float)
    err = acc.std(axis=0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
    return Curve("", tuple(float(x) for x in grid), tuple(acc.mean(axis=0)), tuple(err))


def _rank(row: dict[str, Any], tracks: list[str], rank: MetricDisplay | None) -> tuple:
    """By the aligned ranking key; rows without aligned runs after them, by the first
    track's; best first in the key's direction."""
    scores = []
    if rank is not None:
        scores = [row["metrics"][rank.key][0]]
        scores += [row["tracks"][t][rank.key][0] for t in tracks[:1]]
    tier = next((i for i, s in enumerate(scores) if not math.isnan(s)), len(scores))
    sign = -1.0 if rank is None or rank.higher_is_better else 1.0
    score = sign * scores[tier] if tier < len(scores) else 0.0
    return (tier, score, *(row[k] for k in ROW_KEYS))


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _label(rows: list[dict[str, Any]], common: dict[str, Any], tuned: frozenset[str]) -> None:
    """Name what tells apart rows of one method/variant/regime (e.g. 'head=gap'), and the
    settings in which a trained row differs from the section's COMMON ones (e.g.
    'epochs=2'), but for the TUNED ones (each method's own by design, shown in a column of
    their own); the training settings of a row that trained nothing say nothing about it."""
    families: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        families.setdefault((row["method"], row["variant"], row["regime"]), []).append(row)
    for family in families.values():
        parsed = [json.loads(r["settings"]) for r in family]
        keys = sorted({k for p in parsed for k in p})
        varying = [k for k in keys if len({json.dumps(p.get(k)) for p in parsed}) > 1]
        for row, p in zip(family, parsed, strict=True):
            own = [
                k
                for k, v in common.items()
                if k not in varying
                and k not in tuned
                and row["loss"] != NOT_TRAINED
                and json.dumps(p.get(k), sort_keys=True) != json.dumps(v, sort_keys=True)
            ]
            row["label"] = ", ".join(
                f"{k.removeprefix('model.')}={_value(p.get(k))}" for k in [*varying, *own]
            )
