"""Stops on SIGINT and SIGTERM, and the states a run's record ends in.

A record is ``ok`` (complete: metrics, and the profile when asked), ``failed`` (an error;
its message says what) or ``interrupted`` (a signal stopped the run before it was
complete; its message names the newest checkpoint and what to do next).

Inside ``stop_on_signals()``:

- The first SIGINT/SIGTERM asks for a stop. Training finishes its step, writes a
  checkpoint and the run is recorded ``interrupted``; evaluation and profiling, which write
  nothing, stop at once (``abortable()``); a record being written is finished; no later run
  starts. A wait that may block on the outside world (the next batch of data, building the
  dataset) is ``abortable(grace)``: still waiting GRACE seconds after the request, it is
  interrupted, so a FIFO or a hung reader in a dataset does not keep the process alive.
- A second signal stops at once: nothing more is written (every file is written
  atomically, so none is left half-written) and the newest checkpoint stays.
- A stop signal the main thread cannot take for ``STUCK_S`` seconds (it sleeps in
  uninterruptible I/O, as on a hung network filesystem) ends the process from a watchdog
  thread.

The process exits with 128 + the signal number (130 after SIGINT, 143 after SIGTERM)
whenever a signal kept some requested run from completing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
STUCK_S = 30.0  # a stop signal untaken this long means the main thread cannot run
WAIT_S = 10.0  # a wait for data still going this long after a stop is cut short
POLL_S = 0.5  # the watchdog looks twice a second (a /proc read each, ~0.2 ms)
T = TypeVar("T")

_requested: int | None = None
_requested_at = 0.0
_handled_at = 0.0  # when the main thread last ran the handler
_region: tuple[int, float, float] | None = None  # (number, grace seconds, entered at)
_regions = 0
_kick: int | None = None  # the region the watchdog asked the main thread to leave
_previous: dict[int, object] = {}


class Interrupted(BaseException):
    """A stop signal ended the current work (a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` swallows it). AT_ONCE: a second signal, write nothing more."""

    def __init__(self, signum: int, at_once: bool = False, waited: float = 0.0) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum
        self.at_once = at_once
        self.waited = waited


def requested() -> int | None:
    """The signal number that asked for a stop, or None."""
    return _requested


def signal_name(signum: int) -> str:
    """'SIGINT' / 'SIGTERM' for a signal number."""
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The process exit code after a stop on SIGNUM (the shell's 128 + N)."""
    return 128 + signum


@contextlib.contextmanager
def abortable(grace: float = 0.0) -> Iterator[None]:
    """Work that a stop may cut short: at once (GRACE 0: nothing is written inside), or when
    it is still going GRACE seconds after the stop was asked for (a wait for data)."""
    global _region, _regions
    if _requested is not None and grace == 0:
        raise Interrupted(_requested)
    outer = _region
    _regions += 1
    _region = (_regions, grace, time.monotonic())
    try:
        yield
    finally:
        _region = outer


def abortable_iter(items: Iterable[T], grace: float) -> Iterator[T]:
    """ITEMS, each one fetched inside abortable(GRACE)."""
    it = iter(items)
    while True:
        with abortable(grace):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


def _handler(signum: int, frame: FrameType | None) -> None:
    global _requested, _requested_at, _handled_at, _kick
    _handled_at = time.monotonic()
    kick, _kick = _kick, None
    region = _region
    if kick is not None:  # the watchdog: this region waited too long after the stop
        if region is not None and region[0] == kick and _requested is not None:
            raise Interrupted(_requested, waited=time.monotonic() - _requested_at)
        return
    if _requested is None:
        _requested, _requested_at = signum, time.monotonic()
        if region is not None and region[1] == 0:
            raise Interrupted(signum)
        return
    raise Interrupted(signum, at_once=True)


def _pending(tid: int) -> int | None:
    """A stop signal pending on thread TID (not yet taken), from /proc; None if none."""
    try:
        text = Path(f"/proc/self/task/{tid}/status").read_text()
    except OSError:
        return None
    bits = 0
    for line in text.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            bits |= int(line.split()[1], 16)
    return next((s for s in SIGNALS if bits >> (s - 1) & 1), None)


class _Watchdog(threading.Thread):
    """Reads the signal wake-up pipe and /proc; interrupts a region that waits too long
    after a stop and ends the process when the main thread cannot take a signal."""

    def __init__(self, wakeup: int) -> None:
        super().__init__(name="benchmark-stop-watchdog", daemon=True)
        self.wakeup = wakeup
        self.main = threading.main_thread().ident
        self.main_tid = threading.get_native_id()
        self.done = threading.Event()

    def run(self) -> None:
        """Watch until stop_on_signals() ends."""
        global _kick
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # the main thread takes them
        untaken: tuple[int, float] | None = None  # (signal, arrived no later than)
        kicked, since = 0, time.monotonic()
        while not self.done.is_set():
            byte = self._signals_seen()  # written after `since` by whichever thread took it
            pending = _pending(self.main_tid)  # sent, but no thread could take it yet
            now = time.monotonic()
            if untaken is None and byte is not None:
                untaken = (byte, since)
            elif untaken is None and pending is not None:
                untaken = (pending, now)
            since = now
            if untaken is not None and _handled_at >= untaken[1]:
                untaken = None
            if untaken is not None and now - untaken[1] >= STUCK_S:
                self._exit(untaken[0])
            region, asked = _region, _requested
            if asked is not None and region is not None and region[1] > 0 and region[0] > kicked:
                if now - max(region[2], _requested_at) >= region[1]:
                    kicked = _kick = region[0]
                    signal.pthread_kill(self.main, asked)

    def _signals_seen(self) -> int | None:
        ready, _, _ = select.select([self.wakeup], [], [], POLL_S)
        if not ready:
            return None
        try:
            data = os.read(self.wakeup, 256)
        except BlockingIOError:
            return None
        return next((s for s in data if s in SIGNALS), None)

    def _exit(self, signum: int) -> None:
        message = (
            f"\nStopped by {signal_name(signum)}: the main thread has not been able to take "
            f"the signal for {STUCK_S:.0f} s (it is blocked in I/O that cannot be "
            "interrupted, such as a hung network filesystem). Exiting now; the result of the "
            "current run is not written and the newest checkpoint is kept.\n"
        )
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), message.encode())
        os._exit(exit_code(signum))


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) gets the default signal behaviour back."""
    if not _previous:
        return
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
        for s, h in _previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]
    _previous.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block SIGINT/SIGTERM stop the work as described above (main thread only)."""
    global _requested, _requested_at, _handled_at, _region, _kick
    _requested, _requested_at, _handled_at, _region, _kick = None, 0.0, 0.0, None, None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    _previous.update({s: signal.getsignal(s) for s in SIGNALS})
    old_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    for s in SIGNALS:
        signal.signal(s, _handler)
    watchdog = _Watchdog(read)
    watchdog.start()
    try:
        yield
    finally:
        for s, h in _previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        _previous.clear()
        _requested, _region, _kick = None, None, None  # a stop asked for ends with the block
        signal.set_wakeup_fd(old_wakeup)
        watchdog.done.set()
        os.write(write, b"\0")  # wake it from its wait
        watchdog.join()
        os.close(read)
        os.close(write)
