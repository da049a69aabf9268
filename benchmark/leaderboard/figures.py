"""Leaderboard rows -> the figures of a section: one per figure name the metric displays
declare (recall@K, metres, ...) and the ranking key against compute (Pareto front).
What to draw is decided here; drawing (matplotlib) is in draw.py, imported only to write."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmark.leaderboard.frame import METRIC
from benchmark.specs import MetricDisplay

PLOTS_DIR = "plots"
PARETO = "pareto"
TRAINING = "training"
# Title (before ' on <section>'), x and y label of the figures the core's metrics declare.
FIGURES = {
    "recall": ("Recall@K", "K", "recall (%)"),
    "metres": ("Accuracy within d metres", "d (metres)", "accuracy (%)"),
    TRAINING: (
        "Validation R@1 against training compute",
        "training compute: forward GMACs per pair x pairs seen",
        "validation R@1 (%)",
    ),
}


@dataclass(frozen=True)
class Curve:
    """One leaderboard row as a line: x values, means and standard deviations (0 if one seed)."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    err: tuple[float, ...]


@dataclass(frozen=True)
class Point:
    """One leaderboard row as a point of a cost/score plot."""

    label: str
    cost: float
    score: float
    err: float


@dataclass(frozen=True)
class Plot:
    """A figure the page links to: its name, the section it shows and what to draw."""

    figure: str
    tag: str
    data: tuple[Any, ...]
    title: str
    xlabel: str
    ylabel: str
    higher_is_better: bool = True

    @property
    def path(self) -> str:
        """Where it is written, relative to the page."""
        return f"{PLOTS_DIR}/{slug(self.figure)}-{self.tag}.png"

    def write(self, base: Path) -> None:
        """Draw this figure under BASE."""
        from benchmark.leaderboard import draw

        out = base / self.path
        if self.figure != PARETO:
            draw.curve_plot(self.data, out, self.title, self.xlabel, self.ylabel)
        else:
            draw.pareto_plot(
                self.data, out, self.title, self.xlabel, self.ylabel, self.higher_is_better
            )


def pareto_front(points: Sequence[Point], higher_is_better: bool = True) -> list[Point]:
    """The points no other point beats on both cost (lower) and score, cheapest first."""
    sign = 1.0 if higher_is_better else -1.0
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.cost, -sign * p.score, p.label)):
        if not front or sign * p.score > sign * front[-1].score:
            front.append(p)
    return front


def slug(*parts: str) -> str:
    """A file-name-safe name of PARTS."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def plot_label(row: dict[str, Any]) -> str:
    """A row's legend entry ('$' literal: matplotlib reads $...$ as mathematics)."""
    label = f"{row['method']} ({row['variant']}, {row['regime']})"
    label += f" {row['label']}" if row["label"] else ""
    return label.replace("$", r"\$")


def _err(stats: tuple[float, float, int]) -> float:
    return 0.0 if stats[2] < 2 else stats[1]


def _stats_curve(label: str, points: list[tuple[float, tuple[float, float, int]]]) -> Curve:
    """A curve through (x, (mean, std, runs)) points, with std error bars."""
    return Curve(
        label,
        tuple(float(x) for x, _ in points),
        tuple(s[0] for _, s in points),
        tuple(_err(s) for _, s in points),
    )


def _x(row: dict[str, Any], display: MetricDisplay) -> float | None:
    """Where DISPLAY's value of ROW lies on its figure's x axis (a metric's value or fixed)."""
    if isinstance(display.x, str):
        value = row["first"].get(METRIC + display.x)
        return None if value is None or math.isnan(value) else float(value)
    return display.x


def _curve(row: dict[str, Any], members: list[MetricDisplay]) -> Curve | None:
    """ROW in a figure: its mean curve if a curve-valued member has one, else its points."""
    for display in members:
        if display.y is not None and row["curves"].get(display.key) is not None:
            return replace(row["curves"][display.key], label=plot_label(row))
    points: dict[float, tuple[float, float, int]] = {}
    for display in members:
        x = _x(row, display) if display.y is None else None
        if x is not None and row["metrics"][display.key][2]:
            points.setdefault(x, row["metrics"][display.key])
    return _stats_curve(plot_label(row), sorted(points.items())) if points else None


def _figure(
    name: str, rows: list[dict[str, Any]], members: list[MetricDisplay], title: str, tag: str
) -> Plot | None:
    curves = [c for row in rows if (c := _curve(row, members)) is not None]
    if not curves:
        return None
    head, xlabel, ylabel = FIGURES.get(name, (name, "", members[0].unit))
    return Plot(name, tag, tuple(curves), f"{head} on {title}", xlabel, ylabel)


def _pareto(rows: list[dict[str, Any]], rank: MetricDisplay, title: str, tag: str) -> Plot | None:
    points = [
        Point(plot_label(r), r["profile"]["gmacs"][0], r["metrics"][rank.key][0], _err(s))
        for r in rows
        if r["profile"]["gmacs"][2] and (s := r["metrics"][rank.key])[2]
    ]
    if not points:
        return None
    unit = f" ({rank.unit})" if rank.unit else ""
    return Plot(
        PARETO,
        tag,
        tuple(points),
        f"{rank.header} vs compute on {title}",
        "GMACs per ground+aerial pair",
        rank.header + unit,
        rank.higher_is_better,
    )


def _training(rows: list[dict[str, Any]], title: str, tag: str) -> Plot | None:
    """Each row's validation R@1 after every epoch against the compute spent to get there
    (its forward GMACs per pair times the pairs seen): slow learners and non-learners apart."""
    curves = []
    for row in rows:
        curve, gmacs = row.get("training"), row["profile"]["gmacs"]
        if curve is not None and gmacs[2] and gmacs[0] > 0:
            x = tuple(pairs * gmacs[0] for pairs in curve.x)
            curves.append(replace(curve, label=plot_label(row), x=x))
    if not curves:
        return None
    head, xlabel, ylabel = FIGURES[TRAINING]
    return Plot(TRAINING, tag, tuple(curves), f"{head} on {title}", xlabel, ylabel)


def section_plots(
    rows: list[dict[str, Any]],
    plotted: list[MetricDisplay],
    rank: MetricDisplay | None,
    title: str,
    tag: str,
) -> list[Plot]:
    """The figures of ROWS (none when ROWS is empty): the ranking key's figure, the ranking
    key against compute, then every other figure PLOTTED names."""
    if not rows:
        return []
    title = title.replace("$", r"\$")
    names = list(dict.fromkeys(d.plot for d in plotted if d.plot))
    if rank is not None and rank.plot in names:
        names.remove(rank.plot)
        names.insert(0, rank.plot)
    plots = []
    for name in names:
        members = [d for d in plotted if d.plot == name]
        plots.append(_figure(name, rows, members, title, tag))
        if name == names[0] and rank is not None:
            plots.append(_pareto(rows, rank, title, tag))
    if not names and rank is not None:
        plots.append(_pareto(rows, rank, title, tag))
    plots.append(_training(rows, title, tag))
    return [p for p in plots if p is not None]


def write_plots(plots: list[Plot], page_dir: Path) -> None:
    """Draw PLOTS under PAGE_DIR and remove leaderboard figures no longer linked."""
    wanted = {page_dir / p.path for p in plots}
    prefixes = tuple(f"{name}-" for name in (*FIGURES, PARETO, *(p.figure for p in plots)))
    folder = page_dir / PLOTS_DIR
    if folder.is_dir():
        for old in sorted(folder.glob("*.png")):
            if old.name.startswith(prefixes) and old not in wanted:
                old.unlink()
    for plot in plots:
        plot.write(page_dir)
