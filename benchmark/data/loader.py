"""torch Datasets and DataLoaders over a CrossViewSplit, applying a model's InputPipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.data.base import CrossViewSplit
from benchmark.data.transforms import InputPipeline
from benchmark.errors import BenchmarkError


def prepare(
    transform: Callable[[np.ndarray], torch.Tensor],
    load: Callable[[int], np.ndarray],
    i: int,
    view: str,
) -> torch.Tensor:
    """TRANSFORM of image I of LOAD; an image the model cannot take is named in the error."""
    image = load(i)
    try:
        return transform(image)
    except ValueError as exc:
        paths = getattr(load, "paths", None)
        name = paths[i] if paths else f"{view} image {i}"
        raise BenchmarkError(
            f"{name} ({image.shape[1]}x{image.shape[0]} pixels) cannot be used: {exc}. "
            "Replace it with an image as the dataset distributes it."
        ) from None


class PairDataset(Dataset):
    """Training pairs: ground image i with its positive aerial image.

    On splits with semi-positives (VIGOR-style) an item also holds 'semi' (one randomly
    chosen semi-positive image), 'semi_slot' (its column 1..3 in 'offsets'), 'offsets'
    ((1 + k, 2) metres, positive first) and 'tile_metres' (the aerial tile side). On splits
    with metric positions it holds 'ground_xy' (float64 metres, e.g. CVACT's UTM). An item
    is asked for by index or by (index, epoch) (see EpochTagged): the random choice is a
    function of (seed, epoch, index), whatever the number of workers or processes.
    """

    def __init__(self, split: CrossViewSplit, pipeline: InputPipeline, seed: int = 0) -> None:
        self.split = split
        self.pipeline = pipeline
        self.seed = seed

    def __len__(self) -> int:
        return self.split.num_ground

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        j = int(self.split.positives[i])
        item = {
            "ground": prepare(self.pipeline.ground, self.split.load_ground, i, "ground"),
            "aerial": prepare(self.pipeline.aerial, self.split.load_aerial, j, "aerial"),
            "index": i,
            "aerial_index": j,
        }
        if self.split.ground_xy is not None:
            item["ground_xy"] = torch.as_tensor(self.split.ground_xy[i], dtype=torch.float64)
        semis = self.split.semi_positives
        if semis is not None and self.split.offsets is not None:
            slot = int(np.random.default_rng([self.seed, epoch, i]).integers(semis.shape[1]))
            item["semi"] = prepare(
                self.pipeline.aerial, self.split.load_aerial, int(semis[i, slot]), "aerial"
            )
            item["semi_slot"] = slot + 1
            item["offsets"] = torch.as_tensor(self.split.offsets[i], dtype=torch.float32)
            item["tile_metres"] = float(self.split.aerial_tile_metres or 0.0)
        return item


class ViewDataset(Dataset):
    """All images of one view (for descriptor extraction)."""

    def __init__(self, split: CrossViewSplit, view: str, pipeline: InputPipeline) -> None:
        self.load = split.load_ground if view == "ground" else split.load_aerial
        self.count = split.num_ground if view == "ground" else split.num_aerial
        self.transform = pipeline.ground if view == "ground" else pipeline.aerial
        self.view = view

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        return prepare(self.transform, self.load, i, self.view)


class EpochShuffle(Sampler[int]):
    """A permutation that is a pure function of (seed, epoch): resumable and reproducible."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the permutation of EPOCH, from its START-th index (a mid-epoch resume)."""
        self.epoch = epoch
        self.start = start

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(rng.permutation(self.n)[self.start :].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class EpochTagged:
    """Batches of BATCHES with every index tagged with the epoch SAMPLER is at, as
    (index, epoch) pairs for PairDataset (keeps len; the sampler's set_epoch selects it)."""

    def __init__(self, batches: Any, sampler: Any) -> None:
        self.batches = batches
        self.sampler = sampler

    def __iter__(self):
        for batch in self.batches:
            yield [(int(i), self.sampler.epoch) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    device: torch.device,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    batch_sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader with pinned memory on CUDA and persistent workers when there are any.

    GENERATOR seeds the loader's iterators (worker seeds); without one they draw from the
    global RNG, so where an iterator starts would change the training RNG stream. A
    BATCH_SAMPLER (yielding lists of indices) replaces batch_size, sampler and drop_last.
    """
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=generator,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
        generator=generator,
    )
