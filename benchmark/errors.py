"""User-facing errors: one clear message that says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchmarkError(Exception):
    """An error caused by the user's input; the CLI prints its message without a traceback."""

    exit_code = 2


class TrainingError(BenchmarkError):
    """Training could not continue (for example the loss became NaN)."""

    exit_code = 1


def user_message(exc: BenchmarkError) -> str:
    """EXC's message, without the worker traceback a DataLoader wraps around it."""
    text = str(exc)
    marker = f"{type(exc).__name__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


def suggest(name: str, choices: Iterable[str], kind: str) -> str:
    """Return 'unknown KIND NAME' with the closest known names and the full list."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(choices) if choices else "(none installed)"
    return f"Unknown {kind} {name!r}.{hint} Available: {listing}."
