"""`datasets check`: validate a real dataset folder without training.

Counts each split's pairs against the official counts, finds missing files, checks every
present image cheaply (non-empty, a known header, an intact end marker for JPEG/PNG),
reads a sample and every flagged file with a run's own reader (so the verdict is what a
run will do), and compares prepared polar maps with the on-the-fly transform. A file
named by several sides or splits is checked and counted once.
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
from benchmark.data.files import file_kind, open_regular
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
        kind = file_kind(os.stat(path).st_mode)
        if kind is not None:
            return kind
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return "empty file"
            head = fh.read(8)
            fh.seek(max(0, size - 32))
            tail = fh.read()
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    except BenchmarkError:
        return "not a regular file"  # replaced by a FIFO or device since the stat
    if head.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end marker)"
    if head.startswith(b"\x89PNG"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    try:
        with open_regular(path) as fh, Image.open(fh):
            return None
    except (OSError, SyntaxError, ValueError, BenchmarkError):
        return "not an image"


def run_refuses(path: str) -> str | None:
    """Why a run's own image reader refuses PATH, or None when a run reads it."""
    try:
        read_image(path)
    except BenchmarkError as exc:
        text = str(exc)
        for prefix in (f"Image {path} ", f"{path} "):
            text = text.removeprefix(prefix)
        return "does not decode: " + text.split(". ")[0]
    return None


class Checker:
    """Checks files once each (splits and sides share files) and keeps every verdict.

    A file the cheap checks flag is read with a run's own reader: only a file that
    reader refuses is unreadable; one it reads anyway (e.g. a PNG without its end chunk)
    is reported as damaged but readable.
    """

    def __init__(self) -> None:
        self.verdicts: dict[str, str | None] = {}
        self.damaged: dict[str, str] = {}  # flagged by the cheap checks, read by a run
        self.missing: set[str] = set()

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
        sample = set(todo[::step][:DECODE_SAMPLE])
        for p in todo:
            why = self.verdicts[p]
            if why is not None and run_refuses(p) is None:
                self.damaged[p], self.verdicts[p] = why, None
            elif why is None and p in sample:
                self.verdicts[p] = run_refuses(p)
        return [(p, why) for p in paths if (why := self.verdicts[p]) is not None]

    def bad(self) -> set[str]:
        """Every file found unreadable so far."""
        return {p for p, why in self.verdicts.items() if why is not None}


def _n(x: int) -> str:
    return f"{x:,}"


def check_side(
    checker: Checker, listing: Listing, official: dict[str, int], label: str
) -> list[str]:
    """Report lines for one side (its files' verdicts are kept in CHECKER)."""
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
    n_missing = n_bad = 0  # of this side
    for kind, paths, absent in (
        ("ground", listing.ground, g_absent),
        ("aerial", listing.aerial, a_absent),
    ):
        missing = list(dict.fromkeys(p for p, a in zip(paths, absent, strict=True) if a))
        present = list(dict.fromkeys(p for p, a in zip(paths, absent, strict=True) if not a))
        bad = checker.unreadable(present, f"{label} {kind}")
        damaged = [(p, checker.damaged[p]) for p in present if p in checker.damaged]
        checker.missing.update(missing)
        n_missing += len(missing)
        n_bad += len(bad)
        lines.append(
            f"    {kind}: {_n(len(present))} present, {_n(len(missing))} missing, "
            f"{_n(len(bad))} unreadable"
            + (f", {_n(len(damaged))} damaged but readable" if damaged else "")
        )
        lines += [f"      missing: {p}" for p in missing[:EXAMPLES]]
        lines += [f"      unreadable: {p} ({why})" for p, why in bad[:EXAMPLES]]
        lines += [
            f"      damaged but readable: {p} ({why}; a run reads what decodes)"
            for p, why in damaged[:EXAMPLES]
        ]
    if n_missing:
        kept, _ = listing.present()
        lines.append(
            f"    usable: {_n(len(kept.ground))} of {_n(n)} pairs (the loader drops the "
            "rest with a warning and records the count)"
        )
    if n_bad:
        lines.append(
            "    a run fails when it first reads an unreadable image (possibly mid-training: "
            "the job is recorded as failed); with --skip-bad-images "
            "(dataset_options.skip_bad_images=true) it reads each as a black image and "
            "counts them in the result"
        )
    return lines


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
    for name in [split] if split else list(splits):
        inv = inventory(Path(root), name)
        lines.append(f"split {name}:")
        lines += [f"  found {f}" for f in inv.found]
        for side in ("train", "test"):
            lines += check_side(checker, inv.sides[side], inv.official, f"{name} {side}")
        lines += polar_lines(dataset, inv)
    missing, bad = len(checker.missing), len(checker.bad())
    if missing or bad:  # a file named by several sides or splits counts once
        outcome = ["pairs missing an image are left out (with a warning)"] if missing else []
        if bad:
            outcome.append("an unreadable image fails the run unless --skip-bad-images")
        lines.append(
            f"PARTIAL: {_n(missing)} missing and {_n(bad)} unreadable images (distinct "
            f"files); {' and '.join(outcome)}."
        )
        return lines, 1
    lines.append(
        "OK: every image named by the split files is present and readable by a run (all "
        "checked by header and end marker, a sample of each side fully decoded)."
    )
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
