"""Clean stops on SIGINT and SIGTERM.

Inside ``stop_on_signals()`` the first SIGINT or SIGTERM only sets a flag: training stops
at the next step boundary, writes a checkpoint (``--resume`` continues from it), the
result is written with status ``interrupted`` and no further plugin starts. The process
then exits with ``exit_code`` = 128 + the signal number: 130 after SIGINT, 143 after
SIGTERM. A second signal acts at once (Ctrl-C raises KeyboardInterrupt, SIGTERM kills).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None


def requested() -> int | None:
    """The signal number that asked for a stop, or None."""
    return _requested


def signal_name(signum: int) -> str:
    """'SIGINT' / 'SIGTERM' for a signal number."""
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The process exit code after a clean stop on SIGNUM (the shell's 128 + N)."""
    return 128 + signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block SIGINT/SIGTERM request a clean stop (main thread only)."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        global _requested
        if _requested is None:
            _requested = signum
            return
        for s, h in previous.items():
            signal.signal(s, h)
        signal.raise_signal(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
