"""torch Datasets and DataLoaders over a CrossViewSplit, applying a model's InputPipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.data.base import CrossViewSplit
from benchmark.data.transforms import InputPipeline


class PairDataset(Dataset):
    """Training pairs: ground image i with its positive aerial image."""

    def __init__(self, split: CrossViewSplit, pipeline: InputPipeline) -> None:
        self.split = split
        self.pipeline = pipeline

    def __len__(self) -> int:
        return self.split.num_ground

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.split.positives[i])
        return {
            "ground": self.pipeline.ground(self.split.load_ground(i)),
            "aerial": self.pipeline.aerial(self.split.load_aerial(j)),
            "index": i,
            "aerial_index": j,
        }


class ViewDataset(Dataset):
    """All images of one view (for descriptor extraction)."""

    def __init__(self, split: CrossViewSplit, view: str, pipeline: InputPipeline) -> None:
        self.load = split.load_ground if view == "ground" else split.load_aerial
        self.count = split.num_ground if view == "ground" else split.num_aerial
        self.transform = pipeline.ground if view == "ground" else pipeline.aerial

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.load(i))


class EpochShuffle(Sampler[int]):
    """A permutation that is a pure function of (seed, epoch): resumable and reproducible."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of EPOCH."""
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(rng.permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    device: torch.device,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with pinned memory on CUDA and persistent workers when there are any."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
