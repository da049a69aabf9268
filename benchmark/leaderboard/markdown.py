"""Markdown pieces of the page: text from result files made inert, numbers, tables."""

from __future__ import annotations

import math
import re
from typing import Any

from tabulate import tabulate

# Control characters and line/paragraph separators: a line break would end a table row.
_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
# Characters that make markdown or HTML: escaped with a backslash or as entities.
_MARKUP = {"\\": "\\\\", "|": "\\|", "[": "\\[", "]": "\\]", "`": "\\`", "*": "\\*"}
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_URL = re.compile(r"^https?://[^\s<>\"'`\\]+$")


def escape(text: Any) -> str:
    """TEXT (from a result file) as literal text in a table cell, heading or list item: no
    link, HTML tag, emphasis, cell or line break can come from it."""
    out = _BREAKS.sub(" ", str(text))
    for char, replacement in {**_MARKUP, **_HTML}.items():
        out = out.replace(char, replacement)
    return out


def code(text: Any) -> str:
    """TEXT as an inline code span (literal, HTML included) on one line."""
    out = _BREAKS.sub(" ", str(text))
    ticks = "`" * (1 + max((len(run) for run in re.findall(r"`+", out)), default=0))
    pad = " " if out.startswith("`") or out.endswith("`") else ""
    return f"{ticks}{pad}{out}{pad}{ticks}"


def safe_url(url: Any) -> str | None:
    """URL when it is a plain http(s) address that cannot break the page, else None."""
    return url if isinstance(url, str) and _URL.match(url) else None


def number(value: Any, digits: int) -> str:
    """A number with thousands separators, or '-' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def mean_std(stats: tuple[float, float, int], digits: int = 2) -> str:
    """'mean ± half-width of its 95% interval' over runs ('mean' for one run, '-' for none)."""
    mean, std, n = stats
    if n == 0:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")


def runs(stats: tuple[float, float, int], digits: int = 2) -> str:
    """Mean ± its 95% interval with the number of runs, e.g. '41.20 ± 2.73 (3)'."""
    return "-" if stats[2] == 0 else f"{mean_std(stats, digits)} ({stats[2]})"


def table(body: list[list[str]], headers: list[str]) -> str:
    """A GitHub table of BODY (cells already text) under HEADERS (escaped here)."""
    cells = [escape(h) for h in headers]
    return tabulate(body, headers=cells, tablefmt="github", disable_numparse=True)
