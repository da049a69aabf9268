"""The tuning search on the page: each method's grid points scored on the validation split,
the chosen point marked, and the tuned setting of every test row."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from benchmark.leaderboard.frame import METRIC
from benchmark.leaderboard.markdown import escape, table

TUNED = "validation"  # the split of a tuning run (scored on the split carved from training)


def tuned_keys(tuning: pd.DataFrame) -> list[str]:
    """The settings a search varied: those that differ between one method's tuning runs."""
    keys: set[str] = set()
    for _, runs in tuning.groupby("method"):
        parsed = [json.loads(s) for s in runs.settings]
        every = {k for p in parsed for k in p}
        keys |= {k for k in every if len({json.dumps(p.get(k)) for p in parsed}) > 1}
    return sorted(keys)


def point(settings: str, keys: list[str]) -> str:
    """The values of KEYS in a run's SETTINGS (JSON), e.g. 'lr 0.001, warmup_epochs 1'."""
    parsed = json.loads(settings)
    return ", ".join(f"{k} {_value(parsed.get(k))}" for k in keys)


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _chosen(method: str, tested: pd.DataFrame, keys: list[str]) -> set[str]:
    """The points METHOD's test runs were made with."""
    return {point(s, keys) for s in tested[tested.method == method].settings}


def tuning_section(
    dataset: str, tuning: pd.DataFrame, tested: pd.DataFrame, links: dict[str, str]
) -> list[str]:
    """The search on DATASET: a row per method, a column per grid point holding its
    validation R@1 (bold: the point its test rows use)."""
    keys = tuned_keys(tuning)
    if not keys:
        return []
    order = tuning.assign(p=[point(s, keys) for s in tuning.settings])
    points = list(dict.fromkeys(order.sort_values("settings").p))
    body = []
    for method, runs in order.groupby("method", sort=True):
        chosen = _chosen(str(method), tested, keys)
        cells = [links.get(str(method), escape(method))]
        for p in points:
            found = runs[runs.p == p]
            ok = found[found.status == "ok"]
            r1 = ok[METRIC + "R@1"].dropna() if METRIC + "R@1" in ok else []
            text = f"{r1.iloc[0]:.2f}" if len(r1) else ("failed" if len(found) else "-")
            cells.append(f"**{text}**" if p in chosen and len(r1) else text)
        body.append(cells)
    pairs = sorted({int(v) for v in order.test_queries.dropna()})
    seeds = sorted({int(v) for v in order.seed.dropna()})
    return [
        f"### {escape(dataset)}: tuning",
        "",
        f"Every trained method got the same search: each point below trained with seed "
        f"{', '.join(map(str, seeds))} on the training pairs less the validation split and "
        f"scored by R@1 on that split ({' / '.join(map(str, pairs))} panoramas against their "
        "tiles); the test split was not evaluated. The chosen point (bold: the best validation "
        "R@1, ties broken by R@5, R@10, then the grid's order) is the setting of every test "
        "row of the method, shown in its `tuned` column.",
        "",
        table(body, ["method", *points]),
        "",
    ]
