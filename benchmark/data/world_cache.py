"""The on-disk cache of generated worlds: one folder of .npy files per set of options.

A world is written row by row, as it is generated, into .npy files (space reserved
first) in a temporary folder renamed into place once complete: the generating process
holds one chunk of images at a time whatever the world's size, and a half-written world
is never read. Images are read back memory-mapped, labels and positions into memory.
The cache is optional: when its folder cannot be written or lacks the space (read-only,
disk full), the world is generated in memory with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmark import distributed
from benchmark.io import cache_root

Shapes = dict[str, tuple[tuple[int, ...], Any]]  # array name -> (shape, dtype)
NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def cache_dir() -> Path:
    """Where generated worlds are cached (the harness's cache folder, see cache_root)."""
    return cache_root() / "synthetic"


def world_progress(total: int, desc: str) -> tqdm:
    """A progress bar over the images of a world being generated (rank 0, on a terminal)."""
    shown = distributed.current().is_main and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="pair", leave=False, disable=not shown)


def nbytes(shapes: Shapes) -> int:
    """Bytes the arrays of SHAPES take."""
    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())


def read(path: Path, shapes: Shapes) -> dict[str, np.ndarray] | None:
    """The arrays cached at PATH (images memory-mapped), or None if absent or damaged."""
    if not path.is_dir():
        return None
    out = {}
    try:
        for name, (shape, dtype) in shapes.items():
            array = np.load(path / f"{name}.npy", mmap_mode="r" if len(shape) == 4 else None)
            if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
                return None
            out[name] = array
    except (OSError, ValueError, EOFError):
        return None
    return out


def reserve(fd: int, path: Path) -> None:
    """Allocate the blocks of open file FD now, so a full disk fails here, not mid-write."""
    size = os.fstat(fd).st_size
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:  # a filesystem without fallocate: check the free space
        if exc.errno not in NO_FALLOCATE:
            raise
        if shutil.disk_usage(path.parent).free < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None


class RowFile:
    """Rows of a .npy file, written in place by slice assignment (``rows[a:b] = values``).

    Writes go through the page cache, so the generating process holds one chunk at a
    time however large the file; slicing gives a view of a row range, as on an array.
    """

    def __init__(self, path: Path, fd: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.fd = path, fd
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.offset = np.load(path, mmap_mode="r").offset  # the header's length
        self.start, self.stop = 0, self.shape[0]

    def __len__(self) -> int:
        return self.stop - self.start

    def _rows(self, key: slice) -> range:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("RowFile takes contiguous row slices")
        return range(self.start, self.stop)[key]

    def __getitem__(self, key: slice) -> RowFile:
        rows = self._rows(key)
        view = object.__new__(RowFile)
        view.__dict__.update(self.__dict__, start=rows.start, stop=rows.stop)
        return view

    def __setitem__(self, key: slice, values: np.ndarray) -> None:
        rows = self._rows(key)
        block = np.ascontiguousarray(
            np.broadcast_to(np.asarray(values, dtype=self.dtype), (len(rows), *self.shape[1:]))
        )
        data = memoryview(block).cast("B")
        at = self.offset + rows.start * self.row_bytes
        while data:  # pwrite may write less than asked
            done = os.pwrite(self.fd, data, at)
            data, at = data[done:], at + done


def allocate(folder: Path, shapes: Shapes) -> tuple[Path, dict[str, RowFile]]:
    """A temporary folder beside FOLDER holding SHAPES as .npy files, space reserved."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    files: dict[str, RowFile] = {}
    try:
        for name, (shape, dtype) in shapes.items():
            path = tmp / f"{name}.npy"
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
            files[name] = RowFile(path, os.open(path, os.O_RDWR), shape, dtype)
            reserve(files[name].fd, path)
        return tmp, files
    except BaseException:
        close(files)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def close(files: dict[str, RowFile], sync: bool = False) -> None:
    """Close the files (after fsync when SYNC)."""
    for rows in files.values():
        if sync:
            os.fsync(rows.fd)
        os.close(rows.fd)


def publish(tmp: Path, folder: Path, shapes: Shapes) -> dict[str, np.ndarray] | None:
    """Move the complete world in TMP to FOLDER and read it back; None if that failed."""
    try:
        if folder.exists() and read(folder, shapes) is None:
            shutil.rmtree(folder)  # a damaged copy: replace it
        if not folder.exists():
            os.replace(tmp, folder)
    except OSError:
        pass  # another process may have published the same world meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read(folder, shapes)


def into_cache(
    folder: Path, shapes: Shapes, fill: Callable[[dict[str, Any]], None], what: str
) -> dict[str, np.ndarray] | None:
    """FILL the arrays of SHAPES into FOLDER and read them back (None if that failed).

    An OSError means the cache could not be written; anything FILL raises propagates,
    with the partial files removed.
    """
    tmp, files = allocate(folder, shapes)
    if distributed.current().is_main:
        size = f"{nbytes(shapes) / 2**30:.2f} GiB"
        print(f"generating the {what} ({size}) into {folder}", file=sys.stderr, flush=True)
    try:
        fill(files)
        close(files, sync=True)
    except BaseException:
        close(files)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish(tmp, folder, shapes)


def load_or_generate(
    kind: str,
    key: dict[str, Any],
    shapes: Shapes,
    fill: Callable[[dict[str, Any]], None],
    what: str,
) -> dict[str, np.ndarray]:
    """The arrays of SHAPES cached under KEY, else made by FILL(arrays) (and cached if possible).

    FILL assigns contiguous row slices of each array (``arrays[name][a:b] = values``).
    KEY holds everything that determines the arrays; KIND prefixes the folder name; WHAT
    describes the world in the line announcing its generation.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir() / f"{kind}-{digest}"
    cached = read(folder, shapes)
    if cached is not None:
        return cached
    try:
        cached = into_cache(folder, shapes, fill, what)
        reason = "it could not be read back"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    if cached is not None:
        return cached
    warnings.warn(
        f"The world cache {folder.parent} cannot hold the {what} "
        f"({nbytes(shapes) / 2**30:.2f} GiB: {reason}); generating it in memory instead. "
        "Set CVGL_BENCHMARK_CACHE to a writable folder with space to keep it.",
        stacklevel=2,
    )
    arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in shapes.items()}
    fill(arrays)
    return arrays
