"""Drawing the leaderboard's figures (matplotlib, Agg, PNG): curves with error bars or bands,
and score-vs-cost scatters with their Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.io import atomic_write
from benchmark.leaderboard.figures import Curve, Point, pareto_front

# No software version or date in the file, so the same results give the same bytes.
PNG_METADATA = {"Software": None}
DENSE = 20  # curves with more points are drawn as a line with a band, without markers


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, metadata=PNG_METADATA)


def curve_plot(curves: Sequence[Curve], path: Path, title: str, xlabel: str, ylabel: str) -> None:
    """Write one line per curve to PATH: error bars for a few points, a band for dense curves."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for curve in curves:
        if len(curve.x) <= DENSE:
            ax.errorbar(curve.x, curve.y, yerr=curve.err, marker="o", capsize=3, label=curve.label)
            continue
        (line,) = ax.plot(curve.x, curve.y, label=curve.label)
        low = [y - e for y, e in zip(curve.y, curve.err, strict=True)]
        high = [y + e for y, e in zip(curve.y, curve.err, strict=True)]
        ax.fill_between(curve.x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    xs = [x for curve in curves for x in curve.x]
    if xs and min(xs) > 0 and max(xs) / min(xs) > 50:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(0, 100))
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def pareto_plot(
    points: Sequence[Point],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    higher_is_better: bool = True,
) -> None:
    """Write a score-vs-cost scatter with the Pareto front drawn as a step line to PATH."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for p in points:
        ax.errorbar([p.cost], [p.score], yerr=[p.err], marker="o", capsize=3, label=p.label)
    front = pareto_front(points, higher_is_better)
    if len(front) > 1:
        ax.step(
            [p.cost for p in front],
            [p.score for p in front],
            where="post",
            color="black",
            linestyle="--",
            linewidth=1,
            label="Pareto front",
        )
    costs = [p.cost for p in points]
    if costs and min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(fontsize=7, loc="best")
    _save(fig, path)
