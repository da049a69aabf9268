"""``python -m benchmark results``: list the runs in a folder, or compare two side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchmark.errors import BenchmarkError
from benchmark.results import RunResult, load, read_all

LIST_HEADERS = ["result", "method", "dataset", "split", "seed", "protocol", "status", "R@1", "when"]


def _r1(result: RunResult) -> str:
    value = result.metrics.get("R@1")
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def list_runs(results_dir: Path) -> str:
    """A table of every result under RESULTS_DIR, newest first, and the files it skipped."""
    found, warnings = read_all(results_dir)
    if not found:
        return f"No results under {str(results_dir)!r}." + "".join("\n" + w for w in warnings)
    newest_first = sorted(found.items(), key=lambda f: f[1].finished or f[1].started, reverse=True)
    rows = [
        [
            path.stem,  # the name `results A B` takes, also for a file under an old method name
            f"{r.plugin} ({r.variant}, {r.regime})",
            r.dataset,
            r.split,
            r.seed,
            r.protocol,
            r.status,
            _r1(r),
            r.finished or r.started or "-",
        ]
        for path, r in newest_first
    ]
    table = tabulate(rows, headers=LIST_HEADERS, tablefmt="simple", disable_numparse=True)
    return table + "".join("\n" + w for w in warnings)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def _cell(value: Any) -> Any:
    return f"{value:.2f}" if isinstance(value, float) else value


def _find(results_dir: Path, name: str) -> RunResult:
    path = Path(name)
    if not path.is_file():
        path = results_dir / (name if name.endswith(".json") else name + ".json")
    if not path.is_file():
        raise BenchmarkError(
            f"No result {name!r} (neither a file nor a result in {str(results_dir)!r}); "
            "`python -m benchmark results` lists them."
        )
    try:
        return load(path)
    except ValueError as exc:
        raise BenchmarkError(f"{str(path)!r} is not a valid result file.") from exc


def compare_runs(results_dir: Path, first: str, second: str) -> str:
    """The settings in which two results differ, then their metrics side by side."""
    a, b = _find(results_dir, first), _find(results_dir, second)
    fields = {"config": "", "model_options": "model.", "preprocessing": "preprocessing."}
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    for field, prefix in fields.items():
        left |= _flatten(getattr(a, field), prefix)
        right |= _flatten(getattr(b, field), prefix)
    differ = [
        [key, left.get(key, "-"), right.get(key, "-")]
        for key in sorted(left.keys() | right.keys())
        if left.get(key, "-") != right.get(key, "-")
    ]
    metrics = [
        [key, _cell(a.metrics.get(key, "-")), _cell(b.metrics.get(key, "-"))]
        for key in sorted(a.metrics.keys() | b.metrics.keys())
        if not isinstance(a.metrics.get(key, b.metrics.get(key)), dict | list)
    ]
    head = ["", a.stem(), b.stem()]
    parts = [
        "settings that differ:",
        tabulate(differ, headers=head, tablefmt="simple") if differ else "  none",
        "",
        "metrics:",
        tabulate(
            [["status", a.status, b.status], *metrics],
            headers=head,
            tablefmt="simple",
        ),
    ]
    return "\n".join(parts)
