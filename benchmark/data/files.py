"""The files a dataset listing names: inside its folder, regular files, opened without blocking.

A split file, label list or .mat names files relative to the data root. A name that is
absolute or climbs out through '..' is an error naming the listing and line; so is one
that names a FIFO, a device, a socket or a directory, found from one directory read per
folder (no file is opened). Images are opened only after ``os.stat`` says they are
regular files, with O_NONBLOCK, and checked again on the open descriptor: a FIFO or
device swapped in meanwhile is refused, never read (reading one can block forever).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import BinaryIO

from benchmark.errors import BenchmarkError

KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str | None:
    """What a file of st_mode MODE is when it is not a regular file ('a FIFO ...'), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in KINDS if test(mode)), "not a regular file")


def inside(base: Path | str, name: str, where: str) -> str:
    """BASE/NAME as a string; a BenchmarkError naming WHERE when NAME leaves BASE.

    NAME leaves BASE when it is absolute (or has a drive), holds a NUL byte, or climbs
    above BASE through '..'.
    """
    problem = None
    if "\0" in name:
        problem = "holds a NUL byte"
    elif os.path.isabs(name) or name.startswith("\\") or PureWindowsPath(name).drive:
        problem = "is an absolute path"
    elif os.path.normpath(name.replace("\\", "/")).split("/")[0] == "..":
        problem = f"leads out of {base} through '..'"
    if problem:
        raise BenchmarkError(
            f"{where} names {name!r}, which {problem}; a listing names files inside the "
            "data root. Restore the file from the original download."
        )
    return f"{base}/{name}"


@dataclass(frozen=True)
class Folder:
    """One directory read: its regular files, and what each other entry is."""

    regular: frozenset[str]
    other: dict[str, str]


def scan(directory: str | Path) -> Folder:
    """DIRECTORY's entries (a directory read; a stat only for links and special files).

    A link is judged by its target; a dangling one is in neither set (a missing file).
    """
    regular, other = set(), {}
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file():
                    regular.add(entry.name)
                    continue
                try:
                    other[entry.name] = file_kind(os.stat(entry.path).st_mode) or "unknown"
                except OSError:
                    pass  # a dangling link: missing
    except (FileNotFoundError, NotADirectoryError):
        pass
    return Folder(frozenset(regular), other)


def refuse_special(paths: list[str], where: Callable[[int], str]) -> None:
    """A BenchmarkError naming WHERE(i) when PATHS[i] is a FIFO, device, socket or directory."""
    folders: dict[str, Folder] = {}
    for i, path in enumerate(paths):
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = scan(folder)
        kind = folders[folder].other.get(name)
        if kind is not None:
            raise BenchmarkError(
                f"{where(i)} names {path}, which is {kind}, not an image file. Replace it "
                "with the image from the original download (or fix the listing)."
            )


def open_regular(path: str | Path) -> BinaryIO:
    """PATH opened for binary reading; a BenchmarkError, without blocking, unless regular."""
    kind = file_kind(os.stat(path).st_mode)
    if kind is None:
        nonblock = getattr(os, "O_NONBLOCK", 0)
        fh = open(path, "rb", opener=lambda p, flags: os.open(p, flags | nonblock))
        kind = file_kind(os.fstat(fh.fileno()).st_mode)  # replaced since the stat?
        if kind is None:
            return fh
        fh.close()
    raise BenchmarkError(
        f"{path} is {kind}, not an image file (reading it could block). Replace it with "
        "the image, or set dataset_options.skip_bad_images=true to use a black image in "
        "its place."
    )
