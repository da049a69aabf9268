"""Results directory -> pandas -> markdown leaderboard (tabulate) with its plots.

The leaderboard is a pure function of the result files (plus the installed plugins' cards,
which hold the paper-reported numbers and links): the same files always render the same
bytes, so CI can check that the committed page is what the committed results say.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from benchmark.config import fields_with_role
from benchmark.io import atomic_write
from benchmark.plots import Curve, Point, curve_plot, pareto_plot
from benchmark.profiling import reported_compute
from benchmark.registry import registry
from benchmark.results import RunResult, read_all
from benchmark.specs import ModelCard

RECALL = ("R@1", "R@5", "R@10", "R@1%")
RECALL_K = {"R@1": 1, "R@5": 5, "R@10": 10}
# Localisation metrics shown as columns when some run of a section reports them; every
# acc@<d>m and the full accuracy-vs-distance curve go to the metre plot instead.
TABLE_EXTRA = {"hit_rate": "hit rate", "acc@10m": "acc@10m", "median_error_m": "median error m"}
METRE_METRIC = re.compile(r"^acc@(\d+(?:\.\d+)?)m$")
CURVE = "accuracy_curve"
PROFILE = (("params_m", "params M", 2), ("gmacs", "GMACs", 2), ("latency_ms", "latency ms", 1))
# Config keys that do not tell rows apart, from each field's role (benchmark/settings.py):
# the run's name and seed, how it was evaluated (the protocol picks a column, not a row),
# where it ran; the data root is a machine's path and model options come from model_options.
NOT_SETTINGS = frozenset(
    {
        *fields_with_role("identity", "randomness", "evaluation", "infrastructure"),
        "data_root",
        "model",
    }
)
ROW_KEYS = ["method", "variant", "regime", "settings"]
SECTION_KEYS = ["dataset", "split"]
ALIGNED = "aligned"
UNKNOWN = "unknown-orientation"
PLOTS_DIR = "plots"
PLOT_PREFIXES = ("recall-", "pareto-", "metres-")


@dataclass(frozen=True)
class Plot:
    """A figure the page links to: its path relative to the page and what to draw."""

    path: str
    kind: str
    data: tuple[Any, ...]
    title: str
    xlabel: str
    ylabel: str

    def write(self, base: Path) -> None:
        """Draw this figure under BASE."""
        draw = curve_plot if self.kind == "curve" else pareto_plot
        draw(self.data, base / self.path, self.title, self.xlabel, self.ylabel)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        for key in sorted(value):
            _flatten(f"{prefix}{key}.", value[key], out)
    else:
        out[prefix.rstrip(".")] = value
    return out


def settings(result: RunResult) -> dict[str, Any]:
    """What a run's numbers depend on besides method, variant, regime and seed (flat keys)."""
    flat = _flatten("", {k: v for k, v in result.config.items() if k not in NOT_SETTINGS}, {})
    return _flatten("model.", result.model_options, flat)


def _size(value: Any) -> str:
    return f"{value[0]}x{value[1]}" if isinstance(value, list | tuple) and len(value) == 2 else "?"


def _run_row(r: RunResult, name: str) -> dict[str, Any]:
    opts, prep = r.model_options, r.preprocessing
    polar = prep.get("polar", opts.get("polar"))
    ground = prep.get("ground_size", opts.get("ground_size"))
    aerial = prep.get("aerial_size", opts.get("aerial_size"))
    row = {
        "file": name,
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
        "loss": r.config.get("loss", "-")
        if r.training.get("epochs_completed")
        else "- (not trained)",
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
        "model_settings": json.dumps(
            {"model_options": r.model_options}, sort_keys=True, default=str
        ),
        "R@1%_k": r.metrics.get("R@1%_k"),
    }
    for key, value in r.metrics.items():
        if key in RECALL or key in TABLE_EXTRA or METRE_METRIC.match(key):
            row[key] = value
    curve = r.metrics.get(CURVE)
    row[CURVE] = json.dumps(curve, sort_keys=True) if isinstance(curve, dict) else None
    for key, _, _ in PROFILE:
        row[key] = r.profile.get(key)
    return row


def collect(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable result file, and a warning for each file that is not one."""
    found, warnings = read_all(results_dir)
    rows = [_run_row(r, r.filename()) for r in found]
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.sort_values(
            [*SECTION_KEYS, "protocol", "method", "variant", "regime", "seed", "file"]
        )
        df = df.reset_index(drop=True)
    return df, warnings


def _stats(values: pd.Series) -> tuple[float, float, int]:
    vals = pd.to_numeric(values, errors="coerce").dropna()
    if vals.empty:
        return math.nan, math.nan, 0
    std = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    return float(vals.mean()), std, len(vals)


def _first(values: pd.Series) -> Any:
    """The first recorded value (profiles may be taken on one seed only), or None."""
    present = values.dropna()
    return present.iloc[0] if not present.empty else None


def _mean_std(stats: tuple[float, float, int], digits: int = 2) -> str:
    mean, std, n = stats
    if n == 0:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def _number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _distinct(values: pd.Series, fmt: Any = str) -> str:
    seen = sorted({fmt(v) for v in values if v is not None and not pd.isna(v)})
    return " / ".join(seen) if seen else "-"


def protocol_order(protocol: str) -> tuple[int, float, str]:
    """Sort key of protocols: aligned, unknown-orientation, then fov by decreasing degrees."""
    if protocol.startswith("fov="):
        return 2, -float(protocol[4:]), protocol
    return {ALIGNED: 0, UNKNOWN: 1}.get(protocol, 3), 0.0, protocol


def protocol_title(protocol: str) -> str:
    """A protocol's short name in headers ('FoV 90°' for fov=90)."""
    return f"FoV {protocol[4:]}°" if protocol.startswith("fov=") else protocol


def _weights_key(run: Any) -> tuple:
    """What identifies the weights a run evaluated: everything but epochs and the protocol."""
    flat = json.loads(run.settings)
    flat.pop("epochs", None)
    return run.method, run.variant, run.regime, run.seed, json.dumps(flat, sort_keys=True)


def row_settings(section: pd.DataFrame) -> pd.Series:
    """Each run's row (its settings), where a run that evaluated given weights (epochs 0)
    under another protocol joins the one aligned run whose weights key it shares."""
    trained: dict[tuple, list[str]] = {}
    for run in section[section.protocol == ALIGNED].itertuples():
        trained.setdefault(_weights_key(run), []).append(run.settings)

    def row(run: Any) -> str:
        if run.protocol == ALIGNED or run.epochs != 0:
            return run.settings
        found = trained.get(_weights_key(run), [])
        return found[0] if len(found) == 1 else run.settings

    return pd.Series([row(run) for run in section.itertuples()], index=section.index, dtype=str)


def aggregate(section: pd.DataFrame, metrics: list[str], tracks: list[str]) -> list[dict[str, Any]]:
    """One row per (method, variant, regime, settings): mean/std/count of every metric under
    the aligned protocol, and of every metric under each robustness protocol in TRACKS."""
    rows, absent = [], pd.Series(dtype=float)
    for key, g in section.groupby(ROW_KEYS, sort=True):
        row: dict[str, Any] = dict(zip(ROW_KEYS, key, strict=True))
        aligned = g[g.protocol == ALIGNED]
        main = g if aligned.empty else aligned
        first = main.iloc[0]
        row.update({c: first[c] for c in ("polar", "loss", "input", "R@1%_k")})
        row["descriptor_dim"] = _first(g.descriptor_dim)
        row["seeds"] = len(aligned)
        row["curve"] = _mean_curve(aligned[CURVE])
        for m in metrics:
            row[m] = _stats(aligned.get(m, absent))
        for p, _, _ in PROFILE:
            row[p] = _stats(main[p])
        row["tracks"] = {
            t: {m: _stats(g[g.protocol == t].get(m, absent)) for m in metrics} for t in tracks
        }
        rows.append(row)
    _label(rows)
    return sorted(rows, key=lambda row: _rank(row, tracks))


def _mean_curve(values: pd.Series) -> Curve | None:
    """The runs' accuracy-vs-distance curves averaged, when every run has one on one grid."""
    curves = [json.loads(v) for v in values if isinstance(v, str)]
    if not curves or len(curves) != len(values):
        return None
    grid = curves[0].get("thresholds_m")
    if not grid or any(c.get("thresholds_m") != grid for c in curves):
        return None
    acc = np.array([c["accuracy"] for c in curves], dtype=float)
    err = acc.std(axis=0, ddof=1) if len(acc) > 1 else np.zeros(acc.shape[1])
    return Curve("", tuple(grid), tuple(acc.mean(axis=0)), tuple(err))


def _rank(row: dict[str, Any], tracks: list[str]) -> tuple:
    """By aligned R@1; rows without aligned runs after them, by the first track's R@1."""
    scores = [row["R@1"][0], *(row["tracks"][t]["R@1"][0] for t in tracks[:1])]
    tier = next((i for i, s in enumerate(scores) if not math.isnan(s)), len(scores))
    return (tier, -scores[tier] if tier < len(scores) else 0.0, *(row[k] for k in ROW_KEYS))


def _label(rows: list[dict[str, Any]]) -> None:
    """Name what tells apart rows of one method/variant/regime (e.g. 'head=gap')."""
    families: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        families.setdefault((row["method"], row["variant"], row["regime"]), []).append(row)
    for family in families.values():
        parsed = [json.loads(r["settings"]) for r in family]
        keys = sorted({k for p in parsed for k in p})
        varying = [k for k in keys if len({json.dumps(p.get(k)) for p in parsed}) > 1]
        for row, p in zip(family, parsed, strict=True):
            row["label"] = ", ".join(
                f"{k.removeprefix('model.')}={_value(p.get(k))}" for k in varying
            )


def _card(method: str) -> ModelCard | None:
    spec = registry().models.get(method)
    return spec.card if spec else None


def _link(method: str) -> str:
    """A reference-style link to the paper; its target is defined under 'Methods'."""
    card = _card(method)
    return f"[{method}]" if card and card.url else method


def reported(method: str, dataset: str, split: str) -> Mapping[str, float]:
    """The paper's numbers for DATASET/SPLIT (card keys 'cvusa', 'cvact/val', ...), or {}."""
    card = _card(method)
    if card is None:
        return {}
    return card.reported.get(f"{dataset}/{split}") or card.reported.get(dataset) or {}


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def _plot_label(row: dict[str, Any]) -> str:
    label = f"{row['method']} ({row['variant']}, {row['regime']})"
    return label + (f" {row['label']}" if row["label"] else "")


def _setting(section: pd.DataFrame) -> str:
    """One paragraph stating the settings every row of the section was run under."""
    threads = section.threads.map(lambda t: f" ({int(t)} threads)" if pd.notna(t) else "")
    devices = _distinct(section.device.astype(str) + threads)
    options = _distinct(section.dataset_options)
    parts = [
        f"regime {_distinct(section.regime)}",
        f"epochs {_distinct(section.epochs, lambda v: str(int(v)))}",
        f"batch {_distinct(section.batch_size, lambda v: str(int(v)))}",
        f"optimizer {_distinct(section.optimizer)} (lr {_distinct(section.lr, lambda v: f'{v:g}')}"
        f", {_distinct(section.schedule)} schedule)",
        f"train pairs {_distinct(section.train_pairs, lambda v: str(int(v)))}",
        f"test {_distinct(section.test_queries, lambda v: str(int(v)))} queries / "
        f"{_distinct(section.test_references, lambda v: str(int(v)))} references",
        f"device {devices}",
        f"seeds {_distinct(section.seed, lambda v: str(int(v)))}",
    ]
    if section.limit.notna().any():
        parts.append(f"limit {_distinct(section.limit, lambda v: str(int(v)))}")
    if options not in ("-", "{}"):
        parts.append(f"dataset options `{options}`")
    return "Setting: " + "; ".join(parts) + ". Input sizes (ground / aerial) and polar per row."


def _present(frame: pd.DataFrame, names: list[str]) -> list[str]:
    """The NAMES that are a column of FRAME with some value."""
    return [c for c in names if c in frame and frame[c].notna().any()]


def _runs(stats: tuple[float, float, int]) -> str:
    """Mean ± std with the number of runs, e.g. '41.20 ± 1.10 (3)'."""
    return "-" if stats[2] == 0 else f"{_mean_std(stats)} ({stats[2]})"


def _robustness(section: pd.DataFrame, tracks: list[str]) -> str:
    """The paragraph saying what the robustness columns hold and how runs join a row."""
    seeds = _distinct(section[section.protocol != ALIGNED].protocol_seed, lambda v: str(int(v)))
    fovs = ", ".join(protocol_title(t) for t in tracks if t.startswith("fov="))
    seen = ["rotated by a random azimuth (unknown-orientation)"] if UNKNOWN in tracks else []
    if fovs:
        seen.append(f"cut to an N° field of view from a random azimuth ({fovs})")
    return (
        f"Robustness columns: R@1 with each test ground panorama {' or '.join(seen)}, protocol "
        f"seeds {seeds}; mean ± std (runs), while `seeds` counts aligned runs. A run that "
        "evaluated given weights (epochs 0) joins the row of the aligned run of the same "
        "method, variant, regime and seed whose settings are otherwise the same. Every recall "
        "under each protocol is in the table below."
    )


def _track_table(
    rows: list[dict[str, Any]], tracks: list[str], extras: list[str], with_label: bool, title: str
) -> list[str]:
    """Every recall (and localisation metric) of each row under each robustness protocol."""
    headers = ["method", "variant", *(["setting"] if with_label else []), "regime", "protocol"]
    headers += ["seeds", *RECALL, *(TABLE_EXTRA[c] for c in extras)]
    body = []
    for row in rows:
        for track in tracks:
            stats = row["tracks"][track]
            if stats["R@1"][2]:
                cells = [_link(row["method"]), row["variant"]]
                cells += [row["label"] or "-"] if with_label else []
                cells += [row["regime"], protocol_title(track), str(stats["R@1"][2])]
                body.append(cells + [_mean_std(stats[m]) for m in [*RECALL, *extras]])
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    return [f"### {title}: robustness protocols", "", table, ""]


def _section(dataset: str, split: str, section: pd.DataFrame) -> tuple[list[str], list[Plot]]:
    """One dataset/split: the aligned results with an R@1 column per robustness protocol,
    the aligned runs' plots, then every recall under each robustness protocol."""
    section = section.assign(settings=row_settings(section))
    aligned = section[section.protocol == ALIGNED]
    main = section if aligned.empty else aligned
    tracks = sorted(set(section.protocol) - {ALIGNED}, key=protocol_order)
    extras = _present(aligned, list(TABLE_EXTRA))
    track_extras = _present(section[section.protocol != ALIGNED], list(TABLE_EXTRA))
    measured = _present(aligned, list(section.columns))
    metres = sorted((float(m.group(1)), c) for c in measured if (m := METRE_METRIC.match(c)))
    metrics = [*RECALL, *extras] if not aligned.empty else []
    all_metrics = [*RECALL, *dict.fromkeys([*extras, *track_extras]), *(c for _, c in metres)]
    rows = aggregate(section, all_metrics, tracks)
    with_label = any(r["label"] for r in rows)
    headers = ["method", "variant", *(["setting"] if with_label else []), "regime"]
    headers += ["input g / a", "polar", "loss"]
    headers += ["seeds", *RECALL, *(TABLE_EXTRA[c] for c in extras)] if metrics else []
    headers += [f"R@1 {protocol_title(t)}" for t in tracks]
    headers += [h for _, h, _ in PROFILE] + ["dim", "paper R@1", "Δ R@1"]
    body = []
    for row in rows:
        paper = reported(row["method"], dataset, split).get("R@1")
        mean = row["R@1"][0]
        delta = f"{mean - paper:+.2f}" if paper is not None and not math.isnan(mean) else "-"
        cells = [_link(row["method"]), row["variant"]]
        cells += [row["label"] or "-"] if with_label else []
        cells += [row["regime"], row["input"], row["polar"], row["loss"]]
        cells += [str(row["seeds"])] if metrics else []
        cells += [_mean_std(row[m]) for m in metrics]
        cells += [_runs(row["tracks"][t]["R@1"]) for t in tracks]
        cells += [_number(row[p][0], d) for p, _, d in PROFILE]
        cells += [_number(row["descriptor_dim"], 0)]
        cells += [_number(paper, 2), delta]
        body.append(cells)
    title = f"{dataset} / {split}"
    intro = "Evaluation protocol: aligned." if metrics else "No aligned runs here."
    lines = [f"## {title}", "", f"{intro} {_setting(main)}", ""]
    if tracks:
        lines += [_robustness(section, tracks), ""]
    lines.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
    lines.append("")
    plots = _plots([r for r in rows if r["seeds"]], metres, title, _slug(dataset, split))
    if plots:
        lines.append(" · ".join(f"[{Path(p.path).stem}]({p.path})" for p in plots))
        lines += ["", f"![recall@K on {title}]({plots[0].path})", ""]
    if tracks:
        lines += _track_table(rows, tracks, track_extras, with_label, title)
    return lines, plots


def _plots(
    rows: list[dict[str, Any]], metres: list[tuple[float, str]], title: str, slug: str
) -> list[Plot]:
    """The recall@K, R@1-vs-compute and metre plots of ROWS (none when ROWS is empty)."""
    if not rows:
        return []
    plots = [_recall_plot(rows, title, slug)]
    points = [
        Point(_plot_label(r), r["gmacs"][0], r["R@1"][0], _err(r["R@1"]))
        for r in rows
        if r["gmacs"][2] and r["R@1"][2]
    ]
    if points:
        plots.append(
            Plot(
                f"{PLOTS_DIR}/pareto-{slug}.png",
                "pareto",
                tuple(points),
                f"R@1 vs compute on {title}",
                "GMACs per ground+aerial pair",
                "R@1 (%)",
            )
        )
    if metres or any(r["curve"] for r in rows):
        plots.append(_metre_plot(rows, metres, title, slug))
    return plots


def _err(stats: tuple[float, float, int]) -> float:
    return 0.0 if stats[2] < 2 else stats[1]


def _recall_plot(rows: list[dict[str, Any]], title: str, slug: str) -> Plot:
    curves = []
    for row in rows:
        ks = dict(RECALL_K)
        k1 = row["R@1%_k"]
        if k1 is not None and not pd.isna(k1) and int(k1) not in ks.values():
            ks["R@1%"] = int(k1)
        pts = sorted((k, row[m]) for m, k in ks.items() if row[m][2])
        curves.append(_stats_curve(_plot_label(row), pts))
    return Plot(
        f"{PLOTS_DIR}/recall-{slug}.png",
        "curve",
        tuple(curves),
        f"Recall@K on {title}",
        "K",
        "recall (%)",
    )


def _stats_curve(label: str, points: list[tuple[float, tuple[float, float, int]]]) -> Curve:
    """A curve through (x, (mean, std, runs)) points, with std error bars."""
    return Curve(
        label,
        tuple(float(x) for x, _ in points),
        tuple(s[0] for _, s in points),
        tuple(_err(s) for _, s in points),
    )


def _metre_plot(
    rows: list[dict[str, Any]], metres: list[tuple[float, str]], title: str, slug: str
) -> Plot:
    curves = []
    for row in rows:
        if row["curve"] is not None:
            curves.append(replace(row["curve"], label=_plot_label(row)))
            continue
        pts = [(m, row[c]) for m, c in metres if row[c][2]]
        if pts:
            curves.append(_stats_curve(_plot_label(row), pts))
    return Plot(
        f"{PLOTS_DIR}/metres-{slug}.png",
        "curve",
        tuple(curves),
        f"Accuracy within d metres on {title}",
        "d (metres)",
        "accuracy (%)",
    )


def _cost(ok: pd.DataFrame) -> list[str]:
    """All methods' measured cost (per variant and model options), the paper's beside it."""
    headers = [
        "method", "variant", "input g / a", "profiled runs", "params M", "GMACs", "latency ms",
        "dim", "paper params M", "Δ params", "paper G (unit, input)",
    ]  # fmt: skip
    body = []
    keys = ["method", "variant", "model_settings"]
    for (method, variant, _), g in ok.groupby(keys, sort=True):
        card = _card(method)
        rep = dict(card.reported_cost) if card else {}
        params = _stats(g.params_m)
        _, _, compute = reported_compute(rep) if rep else (None, True, "-")
        paper_m = rep.get("params_m")
        delta = (
            f"{100 * (params[0] - paper_m) / paper_m:+.1f}%"
            if variant == "paper" and paper_m and params[2]
            else "-"
        )
        computed = " (computed)" if rep.get("params_is_computed") else ""
        body.append(
            [
                _link(method),
                variant,
                _distinct(g.input),
                str(params[2]),
                _number(params[0], 2),
                _number(_stats(g.gmacs)[0], 2),
                _number(_stats(g.latency_ms)[0], 1),
                _number(_first(g.descriptor_dim), 0),
                _number(paper_m, 2) + computed if paper_m else "-",
                delta,
                compute,
            ]
        )
    devices = _distinct(ok.device)
    return [
        "## Cost",
        "",
        "Measured by the harness after each run (fvcore MACs per ground+aerial pair at batch 1; "
        f"latency = median per pair at batch 1, mean over runs; device {devices}; a shared "
        "machine inflates latency). The paper columns describe each paper's own configuration; "
        "Δ params is shown only for the paper variant, since other variants are narrower.",
        "",
        tabulate(body, headers=headers, tablefmt="github", disable_numparse=True),
        "",
    ]


def _failed(df: pd.DataFrame) -> list[str]:
    bad = df[df.status != "ok"]
    lines = ["## Failed runs", ""]
    if bad.empty:
        return [*lines, "None.", ""]
    body = [
        [
            f"{r.dataset} / {r.split} ({r.protocol})",
            r.method,
            r.variant,
            r.regime,
            str(r.seed),
            r.status,
            (r.error or "-").replace("|", "\\|")[:200],
        ]
        for r in bad.itertuples()
    ]
    headers = [
        "dataset / split (protocol)",
        "method",
        "variant",
        "regime",
        "seed",
        "status",
        "error",
    ]
    return [*lines, tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), ""]


def _methods(methods: list[str]) -> list[str]:
    lines = ["## Methods", ""]
    for method in methods:
        card = _card(method)
        if card is None:
            lines.append(f"- {method}: plugin not installed here, no card.")
        else:
            lines.append(f"- {_link(method)}: {card.title}. {card.authors}, {card.venue}.")
    links = [f"[{m}]: {c.url}" for m in methods if (c := _card(m)) is not None and c.url]
    return [*lines, "", *links, *([""] if links else [])]


def render(results_dir: Path, page_dir: Path) -> tuple[str, list[Plot], list[str]]:
    """The markdown, its plots (paths relative to PAGE_DIR) and warnings for RESULTS_DIR."""
    df, warnings = collect(results_dir)
    where = Path(os.path.relpath(results_dir, page_dir)).as_posix()
    lines = [
        "# Leaderboard",
        "",
        f"Rendered by `python -m benchmark leaderboard` from the result files in "
        f"[`{where}/`]({where}/); do not edit by hand. Recall is in percent: mean ± sample "
        "standard deviation over seeds, `seeds` = number of runs. The paper columns hold what "
        "each paper reports for its own configuration; Δ R@1 = ours − paper, a reproduction "
        "check only for the paper variant under the paper regime.",
        "",
    ]
    if df.empty:
        return "\n".join([*lines, "No results yet.", ""]), [], warnings
    plots: list[Plot] = []
    ok = df[df.status == "ok"]
    for (dataset, split), section in ok.groupby(SECTION_KEYS, sort=True):
        text, figures = _section(dataset, split, section)
        lines += text
        plots += figures
    if not ok.empty:
        lines += _cost(ok)
    lines += _failed(df)
    lines += _methods(sorted(df.method.unique()))
    return "\n".join(lines), plots, warnings


def write_plots(plots: list[Plot], page_dir: Path) -> None:
    """Draw PLOTS under PAGE_DIR and remove leaderboard figures no longer linked."""
    wanted = {page_dir / p.path for p in plots}
    folder = page_dir / PLOTS_DIR
    if folder.is_dir():
        for old in sorted(folder.glob("*.png")):
            if old.name.startswith(PLOT_PREFIXES) and old not in wanted:
                old.unlink()
    for plot in plots:
        plot.write(page_dir)


def leaderboard_command(results_dir: Path, output: Path, check: bool) -> int:
    """Write OUTPUT (and its plots) from RESULTS_DIR, or with CHECK say whether it is current."""
    text, plots, warnings = render(results_dir, output.parent)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(
                f"{output} is out of date with the result files in {results_dir}; run "
                f"`python -m benchmark leaderboard --results-dir {results_dir} --output {output}` "
                "and commit the page and its plots.",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date.")
        return 0
    with atomic_write(output, "w") as fh:
        fh.write(text)
    write_plots(plots, output.parent)
    print(f"wrote {output} and {len(plots)} plots")
    return 0
