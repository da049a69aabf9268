"""Reporting cost: ``python -m benchmark profile``'s table or JSON, each profile beside the
cost its paper reports."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from benchmark.errors import BenchmarkError
from benchmark.profiling.counting import flop_counter_name
from benchmark.profiling.measuring import profile_model, timing
from benchmark.reported import compare_cost, model_overrides
from benchmark.reported import fmt as _fmt

if TYPE_CHECKING:
    from benchmark.config import Resolved


# The columns of the default `profile` table (fits 80 columns); --wide shows every one.
NARROW = ("method", "variant", "params M", "GMACs", "latency ms", "peak MB")


def _profile_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """Every cell of ROW in the wide table, by header."""
    rep = dict(row.get("reported_cost") or {})
    overrides = row.get("model_overrides") or {}
    paper = compare_cost(rep, row.get("variant", "paper"), overrides, row["params_m"], row["gmacs"])
    g, a = row["input_ground"], row["input_aerial"]
    return {
        "method": row.get("plugin") or "-",
        "variant": row.get("variant", "-"),
        "input g / a": f"{g[0]}x{g[1]} / {a[0]}x{a[1]}",
        "params M": _fmt(row["params_m"]),
        "paper M": paper.paper_params,
        "Δ params": paper.params_delta,
        "GMACs": _fmt(row["gmacs"]),
        "GFLOPs": _fmt(row["gflops"]),
        "paper G (unit, input)": paper.paper_compute,
        "Δ compute": paper.compute_delta,
        "latency ms": _fmt(row["latency_ms"], 1),
        "pairs/s (batch)": f"{_fmt(row['throughput'], 1)} ({row['batch_size']})",
        "peak MB": _fmt(row["peak_memory_mb"], 0),
    }


def _with_delta(value: str, delta: str) -> str:
    return value if delta == "-" else f"{value} ({delta})"


def render_profile_table(rows: Sequence[Mapping[str, Any]], wide: bool = False) -> str:
    """Table of profiles: by default a plain table of the measured cost for an 80-column
    terminal, each figure with its difference from the paper's; WIDE, a markdown table that
    adds inputs, GFLOPs, the paper's figures (``reported_cost``), throughput and the
    operators fvcore did not count.

    The paper's figures are compared by the rule the leaderboard follows too
    (benchmark.reported.compare_cost).
    """
    cells = [_profile_cells(row) for row in rows]
    first = rows[0] if rows else {}
    conventions = (
        f"MACs counted by {first.get('flop_counter', flop_counter_name())} per ground+aerial "
        "pair at batch 1; GFLOPs = 2 x GMACs. Latency: median per pair at batch 1; "
        f"precision {first.get('precision', '-')}; device {first.get('device', '-')}."
    )
    if not wide:
        table = [
            [c[h] for h in NARROW[:2]]
            + [_with_delta(c["params M"], c["Δ params"]), _with_delta(c["GMACs"], c["Δ compute"])]
            + [c[h] for h in NARROW[4:]]
            for c in cells
        ]
        body = tabulate(table, headers=list(NARROW), tablefmt="simple", disable_numparse=True)
        notes = (
            f"{conventions} (+x%): against the paper's own figure, for the variant it "
            "measured. --wide adds inputs, GFLOPs, the paper's figures, throughput and "
            "uncounted operators."
        )
        return body + "\n\n" + textwrap.fill(notes, 80)
    notes = []
    for row in rows:
        rep = dict(row.get("reported_cost") or {})
        skipped = ", ".join(
            f"{u['op'].removeprefix('aten::')} x{u['count']}" for u in row["uncounted_ops"]
        )
        source = f"; paper source: {rep['source']}" if rep.get("source") else ""
        notes.append(f"- {row.get('plugin') or '-'}: uncounted ops: {skipped or 'none'}{source}")
    headers = list(cells[0]) if cells else []
    table = [list(c.values()) for c in cells]
    body = tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)
    footer = ["", conventions + " Throughput at the batch shown.", *notes]
    return body + "\n" + "\n".join(footer)


def profile_command(runs: Sequence[Resolved], fmt: str, wide: bool = False) -> int:
    """``python -m benchmark profile``: profile each resolved run's model (its variant, regime
    and options, pretrained weights off: cost does not need them); print json or a table
    (every column when WIDE)."""
    from benchmark.jobs import resolve_device

    if fmt not in ("json", "table"):
        raise BenchmarkError(f"Unknown format {fmt!r}; use json or table.")
    if not runs:
        raise BenchmarkError(
            "No method to profile; name one with --plugins (`python -m benchmark list` shows "
            "the installed ones)."
        )
    target = resolve_device(runs[0].run.device)
    rows = []
    for resolved in runs:
        spec, run = resolved.spec, resolved.run
        options = resolved.options.model_copy(update={"pretrained": False})
        print(f"profiling {spec.name} ({run.variant}) on {target} ...", file=sys.stderr, flush=True)
        row = profile_model(spec.build(options), target, **timing(target))
        row["plugin"] = spec.name
        rows.append(
            {
                **row,
                "variant": run.variant,
                "regime": run.regime,
                "model_overrides": model_overrides(run.model),
                "reported_cost": dict(spec.card.reported_cost),
            }
        )
    print(json.dumps(rows, indent=2) if fmt == "json" else render_profile_table(rows, wide))
    return 0
