"""CVUSA (the CVPR subset used by SAFA and later work) from its distributed layout.

``splits/train-19zl.csv`` holds the training pairs and ``splits/val-19zl.csv`` the test
pairs (every reference loader tests on it); column 0 is the aerial tile, column 1 the
panorama, relative to the root. Pair k of a file is ground k with aerial k. CVUSA has no
metric positions in its split files, so metre-level metrics do not apply.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmark.data.base import DatasetBundle, SourceGeometry
from benchmark.data.files import inside, refuse_special
from benchmark.data.images import LoadOptions
from benchmark.data.layouts import Inventory, Listing, bundle_from, layout_error, with_polarmaps
from benchmark.errors import BenchmarkError
from benchmark.specs import DatasetSpec

SPLIT_FILES = {"train": "splits/train-19zl.csv", "test": "splits/val-19zl.csv"}
OFFICIAL = {"train pairs": 35_532, "test pairs": 8_884}
REQUIRED = (*SPLIT_FILES.values(), "bingmap/19", "streetview/panos")


def locate(root: Path | None) -> Path:
    """ROOT itself (or ROOT/CVUSA) when it holds the CVUSA files; else a layout error."""
    if root is None:
        raise BenchmarkError("Dataset cvusa needs --data-root pointing at your CVUSA folder.")
    root = Path(root).expanduser()
    for candidate in (root, root / "CVUSA"):
        if all((candidate / rel).exists() for rel in REQUIRED):
            return candidate
    raise layout_error("cvusa", root, [rel for rel in REQUIRED if not (root / rel).exists()])


def read_pairs(csv: Path) -> list[tuple[str, str, int]]:
    """(aerial, panorama, line number) of every line of a CVUSA split CSV (paths relative)."""
    pairs = []
    for n, line in enumerate(csv.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 2 or not cols[0] or not cols[1]:
            raise BenchmarkError(
                f"{csv} line {n} should be 'bingmap/19/ID.jpg,streetview/panos/ID.jpg,...', "
                f"got {line!r}. Restore the file from the original download."
            )
        pairs.append((cols[0], cols[1], n))
    if not pairs:
        raise BenchmarkError(
            f"{csv} lists no pairs (the split is empty). Restore it from the original download."
        )
    return pairs


def polarmap_path(root: Path, aerial: str) -> Path:
    """Where SAFA's data preparation writes the polar image of an aerial tile."""
    return root / aerial.replace("bing", "polar").replace(".jpg", ".png")


def polar_pairs(inv: Inventory, k: int) -> list[tuple[Path, Path]]:
    """Up to K (tile, prepared polar image) pairs of the test side whose polar file exists."""
    pairs = [
        (Path(a), polarmap_path(inv.root, os.path.relpath(a, inv.root)))
        for a in inv.sides["test"].aerial[: 4 * k]
    ]
    return [(a, p) for a, p in pairs if a.is_file() and p.is_file()][:k]


def listing(root: Path, side: str) -> Listing:
    """The pairs of one side ('train' or 'test') as the split file names them."""
    csv = root / SPLIT_FILES[side]
    pairs = read_pairs(csv)
    ground = [inside(root, g, f"{csv} line {n}") for _, g, n in pairs]
    aerial = [inside(root, a, f"{csv} line {n}") for a, _, n in pairs]
    for paths in (ground, aerial):
        refuse_special(paths, lambda i: f"{csv} line {pairs[i][2]}")
    return Listing(
        name=side,
        ground=ground,
        aerial=aerial,
        positives=np.arange(len(pairs)),
        meta={"ids": [Path(a).stem for a, _, _ in pairs], "split_file": SPLIT_FILES[side]},
    )


def inventory(root: Path | None, split: str = "test") -> Inventory:
    """What a CVUSA folder holds for SPLIT (its only split is 'test')."""
    root = locate(root)
    found = [f"split files {', '.join(SPLIT_FILES.values())} in {root}"]
    if (root / "polarmap" / "19").is_dir():
        found.append(
            "prepared polar aerials in polarmap/19 (the harness polar-transforms "
            "the original tiles itself; `datasets check` compares a sample)"
        )
    sides = {side: listing(root, side) for side in ("train", "test")}
    return Inventory("cvusa", split, root, found, sides, dict(OFFICIAL))


def build_cvusa(root: Path | None, split: str, options: dict | None = None) -> DatasetBundle:
    """CVUSA: train-19zl for training, val-19zl as the test set, images at native size."""
    opts = LoadOptions(**(options or {}))
    inv = inventory(root, split)
    if opts.polarmap:
        inv = with_polarmaps(
            inv, lambda a: str(polarmap_path(inv.root, os.path.relpath(a, inv.root)))
        )
    return bundle_from(inv, opts, SourceGeometry(aerial_polar=opts.polarmap))


SPEC = DatasetSpec(
    name="cvusa",
    splits=("test",),
    default_split="test",
    build=build_cvusa,
    description="CVUSA (35,532 train / 8,884 test pairs; aerial 750 px, panorama 1232x224)",
)
