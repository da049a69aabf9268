"""Leaderboard rows -> the markdown page: one section per dataset/split, cost, failures and
the methods' cards, all from the result files (the cards are the snapshots they carry)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.leaderboard.aggregate import (
    ALIGNED,
    BUSY_LOAD,
    UNKNOWN,
    aggregate,
    busy_load,
    common_settings,
    displays,
    first,
    present,
    protocol_order,
    ranking,
    row_settings,
    stats,
)
from benchmark.leaderboard.figures import Plot, section_plots, slug
from benchmark.leaderboard.frame import PROFILE, SECTION_KEYS, collect
from benchmark.leaderboard.markdown import (
    code,
    escape,
    mean_std,
    number,
    runs,
    safe_url,
    table,
)
from benchmark.leaderboard.tuning import TUNED, point, tuned_keys, tuning_section
from benchmark.reported import compare_cost
from benchmark.results import CardSnapshot
from benchmark.specs import MetricDisplay
from benchmark.stats import distinguishable, welch_p


def protocol_title(protocol: str) -> str:
    """A protocol's short name in headers ('FoV 90°' for fov=90)."""
    return f"FoV {protocol[4:]}°" if protocol.startswith("fov=") else protocol


class Cards:
    """Each method's card: the snapshot in its most recently finished result."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.cards: dict[str, CardSnapshot | None] = {}
        for run in df.sort_values(["finished", "file"])[["method", "card"]].itertuples():
            if run.card is not None or run.method not in self.cards:
                self.cards[run.method] = run.card

    def url(self, method: str) -> str | None:
        """The paper's address, when its card gives a safe one."""
        card = self.cards.get(method)
        return safe_url(card.url) if card else None

    def link(self, method: str) -> str:
        """A reference-style link to the paper; its target is defined under 'Methods'."""
        name = escape(method)
        return f"[{name}]" if self.url(method) else name

    def reported(self, method: str, dataset: str, split: str) -> Mapping[str, Any]:
        """The paper's numbers for DATASET/SPLIT (card keys 'cvusa', 'cvact/val', ...), or {}."""
        card = self.cards.get(method)
        if card is None:
            return {}
        return card.reported.get(f"{dataset}/{split}") or card.reported.get(dataset) or {}

    def methods(self, methods: list[str]) -> list[str]:
        """The 'Methods' section: each method's paper, and the link targets."""
        lines = ["## Methods", ""]
        for method in methods:
            card = self.cards.get(method)
            if card is None:
                lines.append(f"- {escape(method)}: no card recorded in its results.")
            else:
                cite = f"{card.title}. {card.authors}, {card.venue}."
                lines.append(f"- {self.link(method)}: {escape(cite)}")
        links = [f"[{escape(m)}]: {url}" for m in methods if (url := self.url(m))]
        return [*lines, "", *links, *([""] if links else [])]


def _distinct(values: pd.Series, fmt: Any = str) -> str:
    seen = sorted({fmt(v) for v in values if v is not None and not pd.isna(v)})
    return " / ".join(escape(v) for v in seen) if seen else "-"


def _setting(section: pd.DataFrame, labelled: bool, tuned: list[str]) -> str:
    """One paragraph stating the settings the rows of the section were run under: the value
    most runs have, a row that differs naming its own in its setting cell (when LABELLED)."""
    threads = section.threads.map(lambda t: f" ({int(t)} threads)" if pd.notna(t) else "")
    devices = _distinct(section.device.astype(str) + threads)
    common = common_settings(section)

    def stated(key: str, fmt: Any = str) -> str:
        if key in tuned:
            return "tuned per method"
        return "-" if common.get(key) is None else escape(fmt(common[key]))

    options = {
        k.removeprefix("dataset_options."): v
        for k, v in common.items()
        if k.startswith("dataset_options.") and v is not None
    }
    parts = [
        f"regime {_distinct(section.regime)}",
        f"epochs {stated('epochs')}",
        f"batch {stated('batch_size')}",
        f"optimizer {stated('optimizer')} (lr {stated('lr', lambda v: f'{v:g}')}"
        f", {stated('schedule')} schedule)",
        f"train pairs {_distinct(section.train_pairs, lambda v: str(int(v)))}",
        f"test {_distinct(section.test_queries, lambda v: str(int(v)))} queries / "
        f"{_distinct(section.test_references, lambda v: str(int(v)))} references",
        f"device {devices}",
        f"seeds {_distinct(section.seed, lambda v: str(int(v)))}",
    ]
    if common.get("limit") is not None:
        parts.append(f"limit {stated('limit')}")
    if options:
        parts.append(f"dataset options {code(json.dumps(options, sort_keys=True))}")
    own = " A row that ran otherwise names what differs under setting." if labelled else ""
    return (
        "Setting: " + "; ".join(parts) + f". Input sizes (ground / aerial) and polar per row.{own}"
    )


def _latency(mean: float, load: float | None) -> str:
    """A latency cell, marked when it was timed on a busy machine (see _load_note)."""
    return number(mean, 1) + (" †" if load is not None else "")


def _load_note(loads: dict[str, float]) -> list[str]:
    """The footnote under a table whose marked latencies were timed under LOADS (by row)."""
    if not loads:
        return []
    listed = ", ".join(f"{escape(name)} {load:.2f}" for name, load in loads.items())
    return [
        f"† latency timed while the 1-minute load average was above {BUSY_LOAD:g} per core "
        f"({listed}): other work shared the cores, so it is slower by an unknown factor and "
        "not comparable with other latencies.",
        "",
    ]


def _robustness(section: pd.DataFrame, tracks: list[str], rank: MetricDisplay) -> str:
    """The paragraph saying what the robustness columns hold and how runs join a row."""
    seeds = _distinct(section[section.protocol != ALIGNED].protocol_seed, lambda v: str(int(v)))
    fovs = ", ".join(protocol_title(t) for t in tracks if t.startswith("fov="))
    seen = ["rotated by a random azimuth (unknown-orientation)"] if UNKNOWN in tracks else []
    if fovs:
        seen.append(f"cut to an N° field of view from a random azimuth ({fovs})")
    return (
        f"Robustness columns: {escape(rank.header)} with each test ground panorama "
        f"{' or '.join(seen)}, protocol seeds {seeds}; mean ± 95% interval (runs), while "
        "`seeds` counts aligned runs. A run that evaluated the weights of another run (its "
        "recorded parent) joins that run's row. Every recall under each protocol is in the "
        "table below."
    )


def _identity(row: dict[str, Any], cards: Cards, with_label: bool) -> list[str]:
    cells = [cards.link(row["method"]), escape(row["variant"])]
    cells += [escape(row["label"]) or "-"] if with_label else []
    return [*cells, escape(row["regime"])]


def _track_table(
    rows: list[dict[str, Any]],
    tracks: list[str],
    columns: list[MetricDisplay],
    rank: MetricDisplay,
    cards: Cards,
    with_label: bool,
    title: str,
) -> list[str]:
    """Every declared column of each row under each robustness protocol."""
    headers = ["method", "variant", *(["setting"] if with_label else []), "regime", "protocol"]
    headers += ["seeds", *(d.header for d in columns)]
    body = []
    for row in rows:
        for track in tracks:
            values = row["tracks"][track]
            if values[rank.key][2]:
                cells = _identity(row, cards, with_label)
                cells += [escape(protocol_title(track)), str(values[rank.key][2])]
                body.append(cells + [mean_std(values[d.key], d.digits) for d in columns])
    return [f"### {title}: robustness protocols", "", table(body, headers), ""]


def _section(
    dataset: str, split: str, section: pd.DataFrame, cards: Cards, tuning: pd.DataFrame
) -> tuple[list[str], list[Plot]]:
    """One dataset/split: the aligned results with a ranking-key column per robustness
    protocol (and the tuned setting, when TUNING holds the dataset's search), the aligned
    runs' plots, then every column under each robustness protocol."""
    keys = tuned_keys(tuning) if not tuning.empty else []
    tuned_methods = set(tuning.method)
    section = section.assign(settings=row_settings(section))
    aligned = section[section.protocol == ALIGNED]
    main = section if aligned.empty else aligned
    tracks = sorted(set(section.protocol) - {ALIGNED}, key=protocol_order)
    shown = displays(section)
    rank = ranking(shown)
    columns = [d for d in shown if d.column]
    metrics = present(aligned, columns)
    track_columns = present(section[section.protocol != ALIGNED], columns)
    rows = aggregate(section, shown, tracks, frozenset(keys))
    with_label = any(r["label"] for r in rows)
    headers = ["method", "variant", *(["setting"] if with_label else []), "regime"]
    headers += ["input g / a", "polar", "loss", *(["tuned"] if keys else [])]
    headers += ["seeds", *(d.header for d in metrics)] if metrics else []
    ranked = rank is not None
    headers += [f"{rank.header} {protocol_title(t)}" for t in tracks] if ranked else []
    headers += [h for _, h, _ in PROFILE] + ["dim"]
    headers += [f"paper {rank.header}", f"Δ {rank.header}"] if ranked else []
    body = []
    for i, row in enumerate(rows):
        cells = _identity(row, cards, with_label)
        cells += [escape(row["input"]), row["polar"], escape(row["loss"])]
        if keys:
            tuned = row["method"] in tuned_methods
            cells.append(escape(point(row["settings"], keys)) if tuned else "- (not tuned)")
        cells += [str(row["seeds"])] if metrics else []
        tied = ranked and _tied(row, rows[i + 1] if i + 1 < len(rows) else None, rank)
        cells += [
            mean_std(row["metrics"][d.key], d.digits) + (" ≈" if tied and d is rank else "")
            for d in metrics
        ]
        if ranked:
            cells += [runs(row["tracks"][t][rank.key], rank.digits) for t in tracks]
        cells += [
            _latency(row["profile"][p][0], row["busy_load"])
            if p == "latency_ms"
            else number(row["profile"][p][0], d)
            for p, _, d in PROFILE
        ]
        cells += [number(row["descriptor_dim"], 0)]
        if ranked:
            paper = cards.reported(row["method"], dataset, split).get(rank.key)
            mean = row["metrics"][rank.key][0]
            known = paper is not None and not math.isnan(mean)
            delta = f"{mean - paper:+.{rank.digits}f}" if known else "-"
            cells += [number(paper, rank.digits), delta]
        body.append(cells)
    title = f"{escape(dataset)} / {escape(split)}"
    intro = "Evaluation protocol: aligned." if metrics else "No aligned runs here."
    lines = [f"## {title}", "", f"{intro} {_setting(main, with_label, keys)}", ""]
    if ranked and any(d is rank for d in metrics):
        lines += [
            f"≈ after {rank.header}: Welch's t-test over the seeds cannot tell this row from "
            "the next one (p ≥ 0.05); their order is not established.",
            "",
        ]
    if tracks and ranked:
        lines += [_robustness(section, tracks, rank), ""]
    lines.append(table(body, headers))
    lines.append("")
    busy = {f"{r['method']} {r['variant']}": r["busy_load"] for r in rows if r["busy_load"]}
    lines += _load_note(busy)
    plotted = present(aligned, [d for d in shown if d.plot])
    shown_rows = [r for r in rows if r["seeds"]]
    plots = section_plots(shown_rows, plotted, rank, f"{dataset} / {split}", slug(dataset, split))
    if plots:
        lines.append(" · ".join(f"[{Path(p.path).stem}]({p.path})" for p in plots))
        lines += ["", f"![{escape(plots[0].title)}]({plots[0].path})", ""]
    if ranked and with_label:
        lines += _comparisons(rows, rank, cards, title)
    if tracks and ranked:
        lines += _track_table(rows, tracks, track_columns, rank, cards, with_label, title)
    return lines, plots


def _comparisons(
    rows: list[dict[str, Any]], rank: MetricDisplay, cards: Cards, title: str
) -> list[str]:
    """Each pair of rows of one method, variant and regime that differ in a setting (an
    ablation): both means, their difference and Welch's p over the seeds."""
    body = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if (a["method"], a["variant"], a["regime"]) != (b["method"], b["variant"], b["regime"]):
                continue
            va, vb = a["values"].get(rank.key, []), b["values"].get(rank.key, [])
            if not va or not vb:
                continue
            p = welch_p(va, vb)
            delta = a["metrics"][rank.key][0] - b["metrics"][rank.key][0]
            body.append(
                [
                    cards.link(a["method"]),
                    escape(a["variant"]),
                    escape(a["label"]),
                    escape(b["label"]),
                    runs(a["metrics"][rank.key], rank.digits),
                    runs(b["metrics"][rank.key], rank.digits),
                    f"{delta:+.{rank.digits}f}",
                    "-" if math.isnan(p) else f"{p:.3f}",
                    "-" if math.isnan(p) else ("yes" if p < 0.05 else "no"),
                ]
            )
    if not body:
        return []
    headers = ["method", "variant", "setting A", "setting B", f"{rank.header} A"]
    headers += [f"{rank.header} B", "Δ (A − B)", "Welch p", "told apart at 5%"]
    return [
        f"### {title}: settings compared",
        "",
        f"Rows of one method that differ in a setting, A ranked above B: {rank.header} mean ± "
        "95% interval (seeds), their difference and the p-value of Welch's two-sided t-test "
        "over the seeds.",
        "",
        table(body, headers),
        "",
    ]


def _tied(row: dict[str, Any], below: dict[str, Any] | None, rank: MetricDisplay) -> bool:
    """Whether ROW's ranking values cannot be told from those of the row BELOW it (both with
    two seeds or more)."""
    if below is None:
        return False
    ours, theirs = row["values"].get(rank.key, []), below["values"].get(rank.key, [])
    return len(ours) > 1 and len(theirs) > 1 and not distinguishable(ours, theirs)


def _cost(ok: pd.DataFrame, cards: Cards) -> list[str]:
    """All methods' measured cost (per variant and model options), the paper's beside it."""
    headers = [
        "method", "variant", "input g / a", "profiled runs", "params M", "GMACs", "latency ms",
        "dim", "paper params M", "Δ params", "paper G (unit, input)", "Δ compute",
    ]  # fmt: skip
    body, busy = [], {}
    for (method, variant, _), g in ok.groupby(["method", "variant", "model_settings"], sort=True):
        card = cards.cards.get(method)
        params, gmacs = stats(g.params_m), stats(g.gmacs)
        overrides = {k: v for o in g.model_overrides for k, v in json.loads(o).items()}
        paper = compare_cost(
            dict(card.reported_cost) if card else {},
            variant,
            overrides,
            params[0] if params[2] else None,
            gmacs[0] if gmacs[2] else None,
        )
        body.append(
            [
                cards.link(method),
                escape(variant),
                _distinct(g.input),
                str(params[2]),
                number(params[0], 2),
                number(gmacs[0], 2),
                _latency(stats(g.latency_ms)[0], load := busy_load(g)),
                number(first(g.descriptor_dim), 0),
                paper.paper_params,
                paper.params_delta,
                escape(paper.paper_compute),
                paper.compute_delta,
            ]
        )
        if load is not None:
            busy[f"{method} {variant}"] = load
    return [
        "## Cost",
        "",
        "Measured by the harness after each run (fvcore MACs per ground+aerial pair at batch 1; "
        f"latency = median per pair at batch 1, mean over runs; device {_distinct(ok.device)}; a "
        "shared machine inflates latency). The paper columns describe each paper's own "
        "configuration; the Δ columns compare only the variant a card names for its figures "
        "(the paper variant unless it names another) with no model option changed, since other "
        "configurations are not what the paper measured (`profile` follows the same rule).",
        "",
        table(body, headers),
        "",
        *_load_note(busy),
    ]


def _failed(df: pd.DataFrame) -> list[str]:
    bad = df[df.status != "ok"]
    lines = ["## Failed runs", ""]
    if bad.empty:
        return [*lines, "None.", ""]
    body = [
        [
            escape(f"{r.dataset} / {r.split} ({r.protocol})"),
            escape(r.method),
            escape(r.variant),
            escape(r.regime),
            str(r.seed),
            r.status,
            escape((r.error or "-")[:200]),
        ]
        for r in bad[
            [
                "dataset",
                "split",
                "protocol",
                "method",
                "variant",
                "regime",
                "seed",
                "status",
                "error",
            ]
        ].itertuples()
    ]
    headers = ["dataset / split (protocol)", "method", "variant", "regime", "seed", "status"]
    return [*lines, table(body, [*headers, "error"]), ""]


def render(results_dir: Path, page_dir: Path) -> tuple[str, list[Plot], list[str]]:
    """The markdown, its plots (paths relative to PAGE_DIR) and warnings for RESULTS_DIR."""
    df, warnings = collect(results_dir)
    where = Path(os.path.relpath(results_dir, page_dir)).as_posix()
    lines = [
        "# Leaderboard",
        "",
        f"Rendered by `python -m benchmark leaderboard` from the result files in "
        f"[`{where}/`]({where}/); do not edit by hand. Recall is in percent: mean ± the "
        "half-width of its 95% Student-t interval over seeds, `seeds` = number of runs. The "
        "paper columns hold what each paper reports for its own configuration; Δ R@1 = ours − "
        "paper, a reproduction check only for the paper variant under the paper regime.",
        "",
    ]
    if df.empty:
        return "\n".join([*lines, "No results yet.", ""]), [], warnings
    cards = Cards(df)
    plots: list[Plot] = []
    ok = df[(df.status == "ok") & (df.split != TUNED)]
    tuning = df[(df.status != "interrupted") & (df.split == TUNED)]
    searched: set[str] = set()
    for (dataset, split), section in ok.groupby(SECTION_KEYS, sort=True):
        searches = tuning[tuning.dataset == dataset]
        text, figures = _section(dataset, split, section, cards, searches)
        lines += text
        plots += figures
        if not searches.empty and dataset not in searched:
            searched.add(dataset)
            tested = section[section.protocol == ALIGNED]
            links = {m: cards.link(m) for m in searches.method.unique()}
            lines += tuning_section(dataset, searches, tested, links)
    if not ok.empty:
        lines += _cost(ok, cards)
    lines += _failed(df)
    lines += cards.methods(sorted(df.method.unique()))
    return "\n".join(lines), plots, warnings
