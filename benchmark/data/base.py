"""The dataset contract: indexed ground and aerial images plus the labels metrics need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.errors import BenchmarkError


def reindexed(load: Callable[[int], np.ndarray], keep: np.ndarray) -> Callable[[int], np.ndarray]:
    """LOAD restricted to the indices KEEP; a loader with its own ``take`` (an ImageReader)
    keeps what else it can do (reduced-size decode, caching)."""
    if hasattr(load, "take"):
        return load.take(keep)
    return Reindexed(load, keep)


@dataclass
class CrossViewSplit:
    """One side of a dataset (train or test): images by index and their ground truth.

    ``positives[i]`` is the index of the aerial image taken where ground image i was taken.
    Optional fields feed richer metrics: ``semi_positives`` (n, k) aerial indices,
    ``ground_xy``/``aerial_xy`` positions in metres (a local metric plane) and ``offsets``
    (n, 1 + k, 2) metric offsets of the ground point from the positive/semi-positive
    tile centres. Images are uint8 HxWx3 RGB arrays at the dataset's native size.
    """

    name: str
    load_ground: Callable[[int], np.ndarray]
    load_aerial: Callable[[int], np.ndarray]
    num_ground: int
    num_aerial: int
    positives: np.ndarray
    semi_positives: np.ndarray | None = None
    ground_xy: np.ndarray | None = None
    aerial_xy: np.ndarray | None = None
    offsets: np.ndarray | None = None
    aerial_tile_metres: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positives = np.asarray(self.positives, dtype=np.int64)
        if len(self.positives) != self.num_ground:
            raise ValueError("positives must have one entry per ground image")

    def subset(self, n: int) -> CrossViewSplit:
        """The first N ground images and only the aerial images they (or their semis) use."""
        if n >= self.num_ground:
            return self
        limited = self.take(np.arange(n))
        limited.meta["limited_to"] = n
        return limited

    def take(self, rows: np.ndarray, whole_gallery: bool = False) -> CrossViewSplit:
        """Ground images ROWS (in that order) with their labels. The gallery keeps only the
        aerial images their positives and semi-positives use (re-indexed), or every aerial
        image unchanged with WHOLE_GALLERY."""
        rows = np.asarray(rows, dtype=np.int64)
        if whole_gallery:
            keep_a = np.arange(self.num_aerial)
        else:
            used = [self.positives[rows]]
            if self.semi_positives is not None:
                used.append(self.semi_positives[rows].ravel())
            keep_a = np.unique(np.concatenate(used))
        remap = np.full(self.num_aerial, -1, dtype=np.int64)
        remap[keep_a] = np.arange(len(keep_a))

        def per_ground(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else np.asarray(arr)[rows]

        semi = per_ground(self.semi_positives)
        return CrossViewSplit(
            name=self.name,
            load_ground=reindexed(self.load_ground, rows),
            load_aerial=self.load_aerial if whole_gallery else reindexed(self.load_aerial, keep_a),
            num_ground=len(rows),
            num_aerial=len(keep_a),
            positives=remap[self.positives[rows]],
            semi_positives=None if semi is None else remap[semi],
            ground_xy=per_ground(self.ground_xy),
            aerial_xy=None if self.aerial_xy is None else np.asarray(self.aerial_xy)[keep_a],
            offsets=per_ground(self.offsets),
            aerial_tile_metres=self.aerial_tile_metres,
            meta=dict(self.meta),
        )


class Reindexed:
    """LOAD(ROWS[i]) as a loader of its own; keeps the file paths for error messages."""

    def __init__(self, load: Callable[[int], np.ndarray], rows: np.ndarray) -> None:
        self.load = load
        self.rows = rows
        paths = getattr(load, "paths", None)
        self.paths = [paths[int(r)] for r in rows] if paths else None

    def __call__(self, i: int) -> np.ndarray:
        return self.load(int(self.rows[i]))


VALIDATION = "validation"  # the split carved from training, as a run's evaluated split


def carve_validation(
    split: CrossViewSplit, fraction: float, seed: int
) -> tuple[CrossViewSplit, CrossViewSplit]:
    """(training rest, validation) of a training SPLIT: a seeded FRACTION of its panoramas,
    at least 2, drawn as whole groups of panoramas that share a positive tile (VIGOR-style
    splits), so no validation positive tile is a training positive. The validation gallery
    holds the tiles its panoramas use; the rest keeps the whole training gallery, so its
    tile indices (mining, semi-positives) are unchanged. The test split is never touched."""
    groups = np.unique(split.positives, return_inverse=True)[1]
    order = np.random.default_rng([seed, 0x5A11D]).permutation(groups.max() + 1)
    want = max(2, round(fraction * split.num_ground))
    sizes = np.bincount(groups)[order]
    taken = order[: int(np.searchsorted(np.cumsum(sizes), want)) + 1]
    val_rows = np.flatnonzero(np.isin(groups, taken))
    train_rows = np.flatnonzero(~np.isin(groups, taken))
    if len(train_rows) < 2:
        raise BenchmarkError(
            f"A validation fraction of {fraction} leaves {len(train_rows)} of the "
            f"{split.num_ground} training pairs for training. Lower it (--set val_fraction=...) "
            "or turn validation off (--set val_fraction=0 selection=last)."
        )
    val = split.take(val_rows)
    val.name = VALIDATION
    return split.take(train_rows, whole_gallery=True), val


@dataclass(frozen=True)
class SourceGeometry:
    """How the harness turns raw images into model inputs for this dataset.

    ``ground_rows`` keeps a fraction (start, stop) of the panorama rows (CVACT keeps the
    middle half); the polar transform samples the full-size square aerial image, unless
    ``aerial_polar`` says the aerial images are already polar (SAFA's prepared polarmap/).
    """

    ground_rows: tuple[float, float] = (0.0, 1.0)
    aerial_polar: bool = False


@dataclass
class DatasetBundle:
    """A dataset ready to use: a training split, a test split and its geometry."""

    name: str
    split: str
    train: CrossViewSplit
    test: CrossViewSplit
    geometry: SourceGeometry = SourceGeometry()
    info: dict[str, Any] = field(default_factory=dict)
