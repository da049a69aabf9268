"""Deterministic fault injection: a test hook that is inert unless its variable is set.

``CVGL_BENCHMARK_FAULT=POINT:N[:ACTION]`` makes the N-th pass (1-based, counted in this
process) through POINT fail with ACTION, so reliability tests never rely on timing luck.

Points: ``train-step`` (after an optimizer step), ``checkpoint-write`` (a checkpoint's
weights are on disk, its manifest not yet: a half-written checkpoint), ``evaluate``
(between ground and aerial descriptor extraction), ``write`` (an atomic file write,
before it is published).

Actions: ``kill`` (default: SIGKILL this process, nothing is cleaned up), ``sigint`` and
``sigterm`` (deliver that signal, as Ctrl-C or a scheduler would), ``enospc`` (raise
OSError ENOSPC, as a full disk would).
"""

from __future__ import annotations

import errno
import os
import signal

VARIABLE = "CVGL_BENCHMARK_FAULT"
_passes: dict[str, int] = {}


def reset() -> None:
    """Forget how often each point was passed (a new in-process run)."""
    _passes.clear()


def point(name: str) -> None:
    """Mark a pass through fault point NAME; inject the configured fault when it is due."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    where, _, rest = spec.partition(":")
    if where != name:
        return
    count, _, action = rest.partition(":")
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(count):
        return
    action = action or "kill"
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    sig = {"kill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[action]
    os.kill(os.getpid(), sig)
