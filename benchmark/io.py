"""Files a run writes: atomic (complete or absent, never half-written), with the user's umask,
and one writer per run (an fcntl lock that a killed process cannot leave held).

Test hook: ``CVGL_BENCHMARK_FAULT=write:N:enospc`` fails the N-th write as a full disk
would (see benchmark/faults.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from benchmark import faults
from benchmark.errors import BenchmarkError


def umask() -> int:
    """The process's file-creation mask (read without changing it where Linux allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write to a temporary file beside PATH, fsync it, then rename it over PATH. The file
    gets the permissions an ordinary open() would give it (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp creates 0600
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


class RunLock:
    """An exclusive lock on PATH held by this process until release(); the file is removed on
    release. A process that dies releases it (the kernel drops fcntl locks)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise BenchmarkError(
                    f"{what} is being written by {holder} (lock {self.path}). Wait for it to "
                    "finish or stop it; two processes never write the same run."
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed while we waited
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        self.fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and let go of the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def cache_root() -> Path:
    """The user cache folder: $CVGL_BENCHMARK_CACHE, else ~/.cache/cvgl-benchmark."""
    return Path(os.environ.get("CVGL_BENCHMARK_CACHE") or Path.home() / ".cache" / "cvgl-benchmark")


@functools.cache
def cpu_model() -> str:
    """The CPU's model name as the operating system reports it (read once a process: every
    CPU retrieval keys its plan by it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of the file at PATH, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
