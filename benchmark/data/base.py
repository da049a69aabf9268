"""The dataset contract: indexed ground and aerial images plus the labels metrics need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def reindexed(load: Callable[[int], np.ndarray], keep: np.ndarray) -> Callable[[int], np.ndarray]:
    """LOAD restricted to the indices KEEP; a loader with its own ``take`` (an ImageReader)
    keeps what else it can do (reduced-size decode, caching)."""
    if hasattr(load, "take"):
        return load.take(keep)
    return lambda j: load(int(keep[j]))


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
        keep_g = np.arange(n)
        used = [self.positives[:n]]
        if self.semi_positives is not None:
            used.append(self.semi_positives[:n].ravel())
        keep_a = np.unique(np.concatenate(used))
        remap = {int(a): i for i, a in enumerate(keep_a)}

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[keep_g]

        semi = None
        if self.semi_positives is not None:
            semi = np.vectorize(remap.__getitem__)(self.semi_positives[:n])
        return CrossViewSplit(
            name=self.name,
            load_ground=self.load_ground,
            load_aerial=reindexed(self.load_aerial, keep_a),
            num_ground=n,
            num_aerial=len(keep_a),
            positives=np.array([remap[int(a)] for a in self.positives[:n]]),
            semi_positives=semi,
            ground_xy=take(self.ground_xy),
            aerial_xy=None if self.aerial_xy is None else self.aerial_xy[keep_a],
            offsets=take(self.offsets),
            aerial_tile_metres=self.aerial_tile_metres,
            meta={**self.meta, "limited_to": n},
        )


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
