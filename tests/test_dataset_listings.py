"""Dataset listings stay inside the data root and name only regular files; nothing blocks.

Each class of bad entry (a path climbing out through '..', an absolute path, a FIFO, a
device, a directory) is refused with the listing and line named, for every dataset's
kind of listing; a FIFO is refused without ever being opened for reading.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

from benchmark.data.check import check_command
from benchmark.data.cvact import build_cvact
from benchmark.data.cvusa import build_cvusa
from benchmark.data.images import ImageReader, LoadOptions, read_bytes, read_image
from benchmark.data.vigor import build_vigor
from benchmark.errors import BenchmarkError
from tests.fixtures_datasets import write_cvact, write_cvusa, write_vigor

SECONDS = 30  # far above the ~0.1 s these take; a blocked read never returns


def finishes(fn: Callable[[], Any], fifo: Path | None = None) -> Any:
    """FN's result or exception, failing the test if FN blocks (a FIFO read never ends)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(SECONDS)
    if thread.is_alive():
        if fifo is not None:  # release the blocked reader, so the thread can end
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked for {SECONDS} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def edit_line(path: Path, number: int, edit: Callable[[str], str]) -> None:
    """Replace line NUMBER (1-based) of PATH by EDIT(line)."""
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def cvusa(tmp_path: Path) -> Path:
    root = tmp_path / "CVUSA"
    write_cvusa(root, n_train=4, n_test=3)
    return root


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("../../etc/passwd", "leads out of"),
        ("streetview/../../../etc/passwd", "leads out of"),
        ("/etc/passwd", "is an absolute path"),
    ],
)
def test_cvusa_entry_outside_the_root_names_file_and_line(
    cvusa: Path, capsys: pytest.CaptureFixture, entry: str, problem: str
) -> None:
    csv = cvusa / "splits" / "train-19zl.csv"
    edit_line(csv, 3, lambda line: line.replace(line.split(",")[1], entry))
    with pytest.raises(BenchmarkError) as err:
        build_cvusa(cvusa, "test")
    assert f"{csv} line 3 names {entry!r}, which {problem}" in str(err.value)
    assert check_command("cvusa", cvusa, None) == 2  # datasets check: cannot be used
    assert f"{csv} line 3" in capsys.readouterr().out


def special_files() -> list[tuple[str, Callable[[Path], None], str]]:
    """(name, make the file at a path, the kind named) for each special-file class."""
    return [
        ("fifo", lambda p: os.mkfifo(p), "a FIFO (named pipe)"),
        ("device", lambda p: p.symlink_to("/dev/null"), "a character device"),
        ("directory", lambda p: p.mkdir(), "a directory"),
    ]


@pytest.mark.parametrize(("name", "make", "kind"), special_files(), ids=["fifo", "device", "dir"])
def test_cvusa_special_file_is_refused_without_blocking(
    cvusa: Path, capsys: pytest.CaptureFixture, name: str, make: Callable, kind: str
) -> None:
    csv = cvusa / "splits" / "val-19zl.csv"
    tile = cvusa / csv.read_text().splitlines()[1].split(",")[0]  # line 2's aerial
    tile.unlink()
    make(tile)
    fifo = tile if name == "fifo" else None
    with pytest.raises(BenchmarkError) as err:
        finishes(lambda: build_cvusa(cvusa, "test"), fifo)
    assert f"{csv} line 2 names {tile}, which is {kind}, not an image file" in str(err.value)
    assert finishes(lambda: check_command("cvusa", cvusa, "test"), fifo) == 2
    assert f"{csv} line 2 names {tile}, which is {kind}" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "make", "kind"), special_files(), ids=["fifo", "device", "dir"])
def test_reader_refuses_a_special_file_swapped_in_later(
    tmp_path: Path, name: str, make: Callable, kind: str
) -> None:
    """A file replaced after the listing was read: the reader refuses it, never blocks."""
    good = tmp_path / "a.png"
    write_cvusa(tmp_path / "c", n_train=1, n_test=1)
    good.write_bytes((tmp_path / "c" / "bingmap/19/0000001.jpg").read_bytes())
    bad = tmp_path / "b.jpg"
    make(bad)
    fifo = bad if name == "fifo" else None
    for read in (read_image, read_bytes):  # pixels, and the bytes decode=device sends
        with pytest.raises(BenchmarkError, match=re.escape(f"{bad} is {kind}, not an image file")):
            finishes(lambda read=read: read(bad), fifo)
    reader = ImageReader([bad, good], "aerial", LoadOptions(skip_bad_images=True))
    with pytest.warns(UserWarning, match="black aerial image"):
        black = finishes(lambda: reader(0), fifo)
    assert black.shape == read_image(good).shape and not black.any()


def test_vigor_entries_outside_their_folder_name_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "VIGOR"
    write_vigor(root, per_city=2)
    labels = root / "splits" / "Seattle" / "same_area_balanced_train.txt"
    edit_line(labels, 1, lambda line: line.replace(line.split()[0], "../../../../etc/passwd"))
    with pytest.raises(BenchmarkError, match=rf"{labels} line 1 names '\.\./\.\./"):
        build_vigor(root, "same-area")
    write_vigor(root, per_city=2)
    listed = root / "splits" / "Chicago" / "satellite_list.txt"
    absolute = "/tmp/satellite_41.88_-87.64.png"  # a well-formed tile name, absolute
    edit_line(listed, 2, lambda line: absolute)
    with pytest.raises(BenchmarkError, match=re.escape(f"{listed} line 2 names '{absolute}'")):
        build_vigor(root, "cross-area")


def test_vigor_fifo_panorama_is_refused_with_its_label_line(tmp_path: Path) -> None:
    root = tmp_path / "VIGOR"
    write_vigor(root, per_city=2)
    labels = root / "splits" / "NewYork" / "same_area_balanced_test.txt"
    pano = root / "NewYork" / "panorama" / labels.read_text().split()[0]
    pano.unlink()
    os.mkfifo(pano)
    with pytest.raises(BenchmarkError, match=re.escape(f"{labels} line 1 names {pano}, which")):
        finishes(lambda: build_vigor(root, "same-area"), pano)


def test_cvact_pano_id_climbing_out_names_its_entry(tmp_path: Path) -> None:
    fx = write_cvact(tmp_path, n=6, n_train=3, n_val=2)
    raw = scipy.io.loadmat(fx["mat"])
    ids = list(fx["ids"])
    row = int(fx["train"][1])
    ids[row] = "../../../../etc/passwd"
    raw["panoIds"] = np.array(ids)
    scipy.io.savemat(fx["mat"], {k: v for k, v in raw.items() if not k.startswith("__")})
    with pytest.raises(BenchmarkError) as err:
        build_cvact(tmp_path, "val")
    assert f"{fx['mat']} (panoIds entry {row + 1}, in trainSet.trainInd) names" in str(err.value)
    assert "leads out of" in str(err.value)


def test_check_counts_a_shared_bad_file_once_and_says_what_a_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "VIGOR"
    info = write_vigor(root, per_city=2)
    tile = root / "Chicago" / "satellite" / info["tiles"]["Chicago"][0]
    tile.write_bytes(tile.read_bytes()[:60])  # in both galleries of both splits
    assert check_command("vigor", root, None) == 1
    out = capsys.readouterr().out
    assert out.count(f"unreadable: {tile} (truncated PNG") == 3  # same-area x2, cross-area
    assert "PARTIAL: 0 missing and 1 unreadable images (distinct files)" in out
    assert "an unreadable image fails the run unless --skip-bad-images" in out


def test_check_reports_a_damaged_file_a_run_reads_as_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "VIGOR"
    info = write_vigor(root, per_city=2)
    tile = root / "Seattle" / "satellite" / info["tiles"]["Seattle"][1]
    data = tile.read_bytes()
    tile.write_bytes(data[: data.rindex(b"IEND") - 4])  # no end chunk; every pixel intact
    read_image(tile)  # a run reads it
    assert check_command("vigor", root, "same-area") == 0
    out = capsys.readouterr().out
    assert f"damaged but readable: {tile} (truncated PNG (no IEND chunk); a run reads" in out
    assert "OK: every image named by the split files is present" in out
