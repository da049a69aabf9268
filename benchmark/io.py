"""Atomic file writing: a file is either complete or absent, never half-written.

Test hook: ``CVGL_BENCHMARK_FAULT=write:N:enospc`` fails the N-th write as a full disk
would (see benchmark/faults.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from benchmark import faults


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to a temporary file beside PATH, fsync it, then rename it over PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            faults.point("write")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cache_root() -> Path:
    """The user cache folder: $CVGL_BENCHMARK_CACHE, else ~/.cache/cvgl-benchmark."""
    return Path(os.environ.get("CVGL_BENCHMARK_CACHE") or Path.home() / ".cache" / "cvgl-benchmark")
