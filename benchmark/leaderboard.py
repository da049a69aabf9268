"""Results directory -> pandas -> markdown leaderboard (tabulate)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmark.io import atomic_write
from benchmark.results import read_all

METRIC_COLUMNS = ["R@1", "R@5", "R@10", "R@1%"]


def collect(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per result file (ok runs only), plus warnings for unreadable files."""
    found, warnings = read_all(results_dir)
    rows = []
    for r in found:
        row = {
            "dataset": r.dataset,
            "split": r.split,
            "method": r.plugin,
            "variant": r.variant,
            "regime": r.regime,
            "seed": r.seed,
            "status": r.status,
            "error": r.error,
        }
        row.update({k: r.metrics.get(k) for k in METRIC_COLUMNS})
        rows.append(row)
    return pd.DataFrame(rows), warnings


def render(results_dir: Path) -> str:
    """The leaderboard markdown for RESULTS_DIR (deterministic: sorted, fixed format)."""
    df, warnings = collect(results_dir)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    lines = ["# Leaderboard", ""]
    if df.empty:
        return "\n".join([*lines, "No results yet.", ""])
    ok = df[df.status == "ok"]
    for (dataset, split), part in ok.groupby(["dataset", "split"], sort=True):
        lines += [f"## {dataset} / {split}", ""]
        table = part.groupby(["method", "variant", "regime"], sort=True)[METRIC_COLUMNS].agg(
            ["mean", "std", "count"]
        )
        body = []
        for (method, variant, regime), row in table.iterrows():
            cells = [method, variant, regime]
            for m in METRIC_COLUMNS:
                std = row[(m, "std")]
                cells.append(f"{row[(m, 'mean')]:.2f}" + (f" ± {std:.2f}" if pd.notna(std) else ""))
            cells.append(int(row[(METRIC_COLUMNS[0], "count")]))
            body.append(cells)
        from tabulate import tabulate

        lines.append(
            tabulate(
                body,
                headers=["method", "variant", "regime", *METRIC_COLUMNS, "seeds"],
                tablefmt="github",
                disable_numparse=True,
            )
        )
        lines.append("")
    return "\n".join(lines)


def leaderboard_command(results_dir: Path, output: Path, check: bool) -> int:
    """Write OUTPUT from RESULTS_DIR, or with CHECK report whether OUTPUT is up to date."""
    text = render(results_dir)
    if check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(
                f"{output} is out of date with {results_dir}; "
                "run `python -m benchmark leaderboard`.",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date.")
        return 0
    with atomic_write(output, "w") as fh:
        fh.write(text)
    print(f"wrote {output}")
    return 0
