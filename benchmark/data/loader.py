"""torch Datasets and DataLoaders over a CrossViewSplit: workers hand over uint8 images in
whole batches, and ``to_model`` turns a batch into model inputs on the model's device."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.data.base import CrossViewSplit
from benchmark.data.sources import view_source
from benchmark.data.transforms import GroundProtocol, InputPipeline


class PairDataset(Dataset):
    """Training pairs: ground image i with its positive aerial image, fetched a batch at a time.

    A batch holds uint8 'ground' and 'aerial' images (see ``ViewSource.fetch``), 'index' and
    'aerial_index'. On splits with semi-positives (VIGOR-style) it also holds 'semi' (one
    randomly chosen semi-positive image per pair), 'semi_slot' (its column 1..3 in
    'offsets'), 'offsets' ((B, 1 + k, 2) metres, positive first) and 'tile_metres' (the aerial
    tile side); on splits with metric positions, 'ground_xy' ((B, 2) float64 metres, e.g.
    CVACT's UTM). Items are asked for by index or by (index, epoch) (see EpochTagged): the
    random choice is a function of (seed, epoch, index), whatever the number of workers or
    processes. ``to_model`` makes the images model inputs on the device.
    """

    def __init__(self, split: CrossViewSplit, pipeline: InputPipeline, seed: int = 0) -> None:
        self.split = split
        self.pipeline = pipeline
        self.seed = seed
        self.ground = view_source(split, "ground", pipeline)
        self.aerial = view_source(split, "aerial", pipeline)

    def __len__(self) -> int:
        return self.split.num_ground

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([key])

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> dict[str, Any]:
        """The batch of KEYS (indices, or (index, epoch) pairs)."""
        tagged = [key if isinstance(key, tuple) else (key, 0) for key in keys]
        index = [int(i) for i, _ in tagged]
        positive = [int(self.split.positives[i]) for i in index]
        batch: dict[str, Any] = {
            "ground": self.ground.fetch(index, self.pipeline),
            "aerial": self.aerial.fetch(positive, self.pipeline),
            "index": torch.tensor(index, dtype=torch.int64),
            "aerial_index": torch.tensor(positive, dtype=torch.int64),
        }
        if self.split.ground_xy is not None:
            xy = np.asarray(self.split.ground_xy)[index]
            batch["ground_xy"] = torch.as_tensor(xy, dtype=torch.float64)
        semis = self.split.semi_positives
        if semis is not None and self.split.offsets is not None:
            slots = [
                int(np.random.default_rng([self.seed, epoch, i]).integers(semis.shape[1]))
                for i, epoch in tagged
            ]
            picked = [int(semis[i, slot]) for i, slot in zip(index, slots, strict=True)]
            batch["semi"] = self.aerial.fetch(picked, self.pipeline)
            batch["semi_slot"] = torch.tensor(slots, dtype=torch.int64) + 1
            offsets = np.stack([self.split.offsets[i] for i in index])
            batch["offsets"] = torch.as_tensor(offsets, dtype=torch.float32)
            tile = float(self.split.aerial_tile_metres or 0.0)
            batch["tile_metres"] = torch.full((len(index),), tile, dtype=torch.float64)
        return batch

    def to_model(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """BATCH with its images as normalised model inputs on DEVICE (other entries as they
        are)."""
        out = dict(batch)
        out["ground"] = self.ground.to_model(batch["ground"], self.pipeline, device)
        out["aerial"] = self.aerial.to_model(batch["aerial"], self.pipeline, device)
        if "semi" in batch:
            out["semi"] = self.aerial.to_model(batch["semi"], self.pipeline, device)
        return out


class ViewDataset(Dataset):
    """All images of one view (for descriptor extraction), fetched a batch at a time; ground
    images are shown through PROTOCOL on the device."""

    def __init__(
        self,
        split: CrossViewSplit,
        view: str,
        pipeline: InputPipeline,
        protocol: GroundProtocol | None = None,
    ) -> None:
        self.source = view_source(split, view, pipeline)
        self.count = split.num_ground if view == "ground" else split.num_aerial
        self.pipeline = pipeline
        self.protocol = protocol if view == "ground" else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """The uint8 images INDICES and their indices."""
        return {
            "image": self.source.fetch(indices, self.pipeline),
            "index": torch.tensor([int(i) for i in indices], dtype=torch.int64),
        }

    def to_model(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        """The batch's normalised model inputs on DEVICE."""
        index = batch["index"].tolist()
        return self.source.to_model(batch["image"], self.pipeline, device, self.protocol, index)


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


def batched(batch: Any) -> Any:
    """The collate function of datasets that fetch whole batches: the batch as it is."""
    return batch


def resolve_workers(workers: int | str, device: torch.device) -> int:
    """WORKERS, or for 'auto' the cores this process may use (shared with the other torchrun
    processes of its machine): all but one on CUDA; on CPU, where the model computes on the
    same cores, a quarter of them (none below 4)."""
    if workers != "auto":
        return int(workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = max(1, (cores or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, per_process - 1) if device.type == "cuda" else per_process // 4


class WaitClock:
    """ITERABLE, counting the seconds spent waiting for its items (starting the iterator
    included): the time a training loop waits for data."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.iterable = iterable
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        start = time.perf_counter()
        items = iter(self.iterable)
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield item
            start = time.perf_counter()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int | str,
    device: torch.device,
    sampler: Sampler | None = None,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    batch_sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader of whole batches: WORKERS (or 'auto', see resolve_workers) kept alive
    between epochs, each prefetching two batches, and pinned memory on CUDA.

    GENERATOR seeds the loader's iterators (worker seeds); without one they draw from the
    global RNG, so where an iterator starts would change the training RNG stream. A
    BATCH_SAMPLER (yielding lists of indices) replaces batch_size, sampler and drop_last.
    """
    workers = resolve_workers(workers, device)
    common = {
        "num_workers": workers,
        "collate_fn": batched,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
        "prefetch_factor": 2 if workers else None,
        "generator": generator,
    }
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    return DataLoader(dataset, batch_size, sampler=sampler, drop_last=drop_last, **common)
