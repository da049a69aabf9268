"""`datasets check`: validate a real dataset folder without training.

Counts each split's pairs against the official counts, finds missing files, checks every
present image cheaply (non-empty, a known header, an intact end marker for JPEG/PNG),
fully decodes a sample, and compares prepared polar maps with the on-the-fly transform.
Exit code: 0 complete, 1 images missing or unreadable (the dataset still loads without
them), 2 the folder cannot be used (wrong root, damaged split files).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from benchmark.data import cvact, cvusa, vigor
from benchmark.data.images import read_image
from benchmark.data.layouts import Inventory, Listing
from benchmark.data.transforms import polar_transform
from benchmark.errors import BenchmarkError, suggest

INVENTORIES: dict[str, tuple[tuple[str, ...], Callable[[Path, str], Inventory]]] = {
    "cvusa": (cvusa.SPEC.splits, cvusa.inventory),
    "cvact": (cvact.SPEC.splits, cvact.inventory),
    "vigor": (vigor.SPEC.splits, vigor.inventory),
}
POLAR = {"cvusa": cvusa.polar_pairs, "cvact": cvact.polar_pairs}
DECODE_SAMPLE = 16
EXAMPLES = 3
POLAR_TOLERANCE = 2.0  # mean absolute difference in uint8 levels


def probe(path: str) -> str | None:
    """Why PATH is not a readable image (cheap checks), or None when it looks intact."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, size - 32))
            tail = fh.read()
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    if head.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end marker)"
    if head.startswith(b"\x89PNG"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    try:
        with Image.open(path):
            return None
    except (OSError, SyntaxError, ValueError):
        return "not an image"


def decode_failure(path: str) -> str | None:
    """Why PATH does not fully decode, or None when it does."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"does not decode: {exc}"
    return None


class Checker:
    """Checks files once each (splits share sides) and collects the problems found."""

    def __init__(self) -> None:
        self.verdicts: dict[str, str | None] = {}

    def unreadable(self, paths: list[str], label: str) -> list[tuple[str, str]]:
        """(path, reason) for each unreadable path of PATHS (all probed, a sample decoded)."""
        todo = [p for p in paths if p not in self.verdicts]
        with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
            results = pool.map(probe, todo)
            for p, why in zip(
                todo,
                tqdm(
                    results,
                    total=len(todo),
                    desc=f"checking {label}",
                    unit="img",
                    leave=False,
                    disable=len(todo) < 1000,
                ),
                strict=True,
            ):
                self.verdicts[p] = why
        step = max(1, len(todo) // DECODE_SAMPLE)
        for p in todo[::step][:DECODE_SAMPLE]:
            if self.verdicts[p] is None:
                self.verdicts[p] = decode_failure(p)
        return [(p, self.verdicts[p]) for p in paths if self.verdicts[p] is not None]


def _n(x: int) -> str:
    return f"{x:,}"


def check_side(
    checker: Checker, listing: Listing, official: dict[str, int], label: str
) -> tuple[list[str], int]:
    """Report lines for one side and its number of problems (missing + unreadable)."""
    g_absent, a_absent = listing.absent()
    n = len(listing.ground)
    expected = official.get(f"{listing.name} pairs")
    note = (
        ""
        if expected is None
        else (
            f" (official {_n(expected)})"
            if expected == n
            else f" (official {_n(expected)}: this copy lists a different number)"
        )
    )
    lines = [
        f"  {listing.name}: {_n(n)} pairs listed{note}, {_n(len(listing.aerial))} aerial "
        "images in its gallery"
    ]
    tiles = official.get(f"{listing.name} tiles")
    if tiles is not None and tiles != len(listing.aerial):
        lines.append(f"    gallery differs from the official {_n(tiles)} tiles")
    n_missing = n_bad = 0
    for kind, paths, absent in (
        ("ground", listing.ground, g_absent),
        ("aerial", listing.aerial, a_absent),
    ):
        missing = [p for p, a in zip(paths, absent, strict=True) if a]
        present = [p for p, a in zip(paths, absent, strict=True) if not a]
        bad = checker.unreadable(present, f"{label} {kind}")
        n_missing += len(missing)
        n_bad += len(bad)
        lines.append(
            f"    {kind}: {_n(len(present))} present, {_n(len(missing))} missing, "
            f"{_n(len(bad))} unreadable"
        )
        lines += [f"      missing: {p}" for p in missing[:EXAMPLES]]
        lines += [f"      unreadable: {p} ({why})" for p, why in bad[:EXAMPLES]]
    if n_missing:
        kept, _ = listing.present()
        lines.append(
            f"    usable: {_n(len(kept.ground))} of {_n(n)} pairs (the loader drops the "
            "rest with a warning and records the count)"
        )
    if n_bad:
        lines.append(
            "    unreadable images stop a run: restore them, or set "
            "dataset_options.skip_bad_images=true to read them as black images"
        )
    return lines, n_missing + n_bad


def polar_lines(dataset: str, inv: Inventory) -> list[str]:
    """Agreement of a sample of prepared polar maps with the harness's own transform."""
    pairs = POLAR[dataset](inv, 4) if dataset in POLAR else []
    if not pairs:
        return []
    diffs = []
    for aerial, polar in pairs:
        prepared = read_image(polar).astype(np.float32)
        own = polar_transform(read_image(aerial), *prepared.shape[:2])
        diffs.append(float(np.abs(np.round(own) - prepared).mean()))
    verdict = "agree" if max(diffs) <= POLAR_TOLERANCE else "DIFFER (the harness uses its own)"
    return [
        f"  prepared polar maps vs on-the-fly transform on {len(pairs)} tiles: mean |diff| "
        f"<= {max(diffs):.2f} levels: {verdict}"
    ]


def check_dataset(dataset: str, root: Path, split: str | None) -> tuple[list[str], int]:
    """Report lines and exit code for DATASET at ROOT (one split, or all of them)."""
    if dataset not in INVENTORIES:
        raise BenchmarkError(suggest(dataset, INVENTORIES, "dataset with files to check"))
    splits, inventory = INVENTORIES[dataset]
    if split is not None and split not in splits:
        raise BenchmarkError(suggest(split, splits, f"{dataset} split"))
    checker = Checker()
    lines = [f"{dataset} at {root}"]
    problems = 0
    for name in [split] if split else list(splits):
        inv = inventory(Path(root), name)
        lines.append(f"split {name}:")
        lines += [f"  found {f}" for f in inv.found]
        for side in ("train", "test"):
            side_lines, n = check_side(checker, inv.sides[side], inv.official, f"{name} {side}")
            lines += side_lines
            problems += n
        lines += polar_lines(dataset, inv)
    if problems:
        lines.append(
            f"PARTIAL: {_n(problems)} images missing or unreadable; training and "
            "evaluation run on the complete pairs only."
        )
        return lines, 1
    lines.append("OK: every image named by the split files is present and readable.")
    return lines, 0


def check_command(dataset: str, root: Path, split: str | None) -> int:
    """`datasets check`: print what was found and return the exit code (0, 1 or 2)."""
    try:
        lines, code = check_dataset(dataset, Path(root).expanduser(), split)
    except BenchmarkError as exc:
        print(f"{dataset} at {root}: cannot be used.\n{exc}")
        return 2
    print("\n".join(lines))
    return code
