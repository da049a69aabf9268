"""Global hard-negative mining (Zhu et al., WACV 2021; used by VIGOR) as a batch sampler.

The sampler caches the latest training descriptors of every panorama and tile, written
from the training forward passes (``observe``). At the start of each epoch after the
first it draws a random mining pool of tiles and stores, per panorama, the ids of its
top-k most similar pool tiles. A batch is then half random (a random tile that is some
panorama's positive, then a random panorama of it) and half mined (for each random
sample, a random tile of its top-k list, then a random panorama whose positive it is).
No two samples of a batch share any of their tiles (positive or semi-positive); before
the pool exists the whole batch is random under the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from benchmark.data.base import CrossViewSplit
from benchmark.errors import BenchmarkError

MINED_TRIES = 100  # redraws of a mined tile before falling back to a random sample
SLOT_TRIES = 2000  # random draws per batch slot before the batch is declared impossible


def scaled_pool(pool: int, k: int, num_tiles: int) -> tuple[int, int]:
    """(pool, k) scaled to a dataset of NUM_TILES tiles: k keeps its share of the pool.

    The pool is capped at the tile count and k scales with it (40,000 / 100 keeps 0.25%)
    but never below 10 (or the pool), so small worlds still mine among several tiles.
    """
    size = min(pool, num_tiles)
    return size, int(min(k, size, max(10, round(k * size / max(1, pool)))))


class MiningSampler(Sampler[list[int]]):
    """Batches of panorama indices: half random, half globally mined, no shared tiles."""

    def __init__(
        self,
        split: CrossViewSplit,
        batch_size: int,
        seed: int,
        pool: int = 40_000,
        k: int = 100,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.pool, self.k = scaled_pool(pool, k, split.num_aerial)
        self.positives = np.asarray(split.positives, dtype=np.int64)
        semis = split.semi_positives
        self.tiles = (
            self.positives[:, None]
            if semis is None
            else np.concatenate([self.positives[:, None], np.asarray(semis)], axis=1)
        )
        self.by_tile: dict[int, np.ndarray] = {}
        order = np.argsort(self.positives, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(self.positives[order]) != 0])
        for block in np.split(order, starts[1:]):
            self.by_tile[int(self.positives[block[0]])] = block
        self.positive_tiles = np.array(sorted(self.by_tile), dtype=np.int64)
        self.ground_cache: torch.Tensor | None = None
        self.aerial_cache: torch.Tensor | None = None
        self.aerial_seen = np.zeros(split.num_aerial, dtype=bool)
        self.num_aerial = split.num_aerial
        self.topk: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positives) // self.batch_size - self.skip

    def observe(
        self,
        ground_index: torch.Tensor,
        ground: torch.Tensor,
        aerial_index: torch.Tensor,
        aerial: torch.Tensor,
    ) -> None:
        """Write the latest descriptors of a training batch into the cache."""
        ground, aerial = ground.detach().float().cpu(), aerial.detach().float().cpu()
        if self.ground_cache is None or self.aerial_cache is None:
            self.ground_cache = torch.zeros(len(self.positives), ground.shape[1])
            self.aerial_cache = torch.zeros(self.num_aerial, aerial.shape[1])
        gi, ai = ground_index.long().cpu(), aerial_index.long().cpu()
        self.ground_cache[gi] = ground
        self.aerial_cache[ai] = aerial
        self.aerial_seen[ai.numpy()] = True

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The descriptor cache and this epoch's top-k lists, for a checkpoint."""
        state = {"aerial_seen": torch.from_numpy(self.aerial_seen.copy())}
        if self.ground_cache is not None and self.aerial_cache is not None:
            state["ground_cache"] = self.ground_cache.clone()
            state["aerial_cache"] = self.aerial_cache.clone()
        if self.topk is not None:
            state["topk"] = torch.from_numpy(self.topk.copy())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor], topk: bool = True) -> None:
        """Restore a state_dict; TOPK=False keeps the current top-k lists (a new epoch's)."""
        self.aerial_seen = state["aerial_seen"].numpy().copy()
        self.ground_cache = state.get("ground_cache")
        self.aerial_cache = state.get("aerial_cache")
        if topk:
            self.topk = state["topk"].numpy().copy() if "topk" in state else None

    def refresh(self, rng: np.random.Generator, chunk: int = 4096) -> None:
        """Draw a random pool among cached tiles and store every panorama's top-k of it."""
        seen = np.flatnonzero(self.aerial_seen)
        if self.ground_cache is None or self.aerial_cache is None or len(seen) == 0:
            return
        pool = rng.choice(seen, size=min(self.pool, len(seen)), replace=False)
        refs = self.aerial_cache[torch.from_numpy(pool)]
        k = min(self.k, len(pool))
        top = np.empty((len(self.positives), k), dtype=np.int64)
        for s in range(0, len(self.positives), chunk):
            sim = self.ground_cache[s : s + chunk] @ refs.T
            top[s : s + chunk] = pool[sim.topk(k, dim=1).indices.numpy()]
        self.topk = top

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select EPOCH from its START-th sample; from the second epoch on, refresh the pool."""
        self.epoch = epoch
        self.skip = start // self.batch_size
        if epoch > 0:
            self.refresh(np.random.default_rng([self.seed, epoch, 1]))

    def _random(self, rng: np.random.Generator, used: set[int]) -> int:
        for _ in range(SLOT_TRIES):
            tile = int(rng.choice(self.positive_tiles))
            i = int(rng.choice(self.by_tile[tile]))
            if used.isdisjoint(self.tiles[i].tolist()):
                return i
        raise BenchmarkError(
            f"Could not form a batch of {self.batch_size} samples that share no tile; "
            "lower --batch-size or turn mining off (--set mining=false)."
        )

    def _mined(self, rng: np.random.Generator, anchor: int, used: set[int]) -> int | None:
        if self.topk is None:
            return None
        for _ in range(MINED_TRIES):
            panoramas = self.by_tile.get(int(rng.choice(self.topk[anchor])))
            if panoramas is None:
                continue
            i = int(rng.choice(panoramas))
            if used.isdisjoint(self.tiles[i].tolist()):
                return i
        return None

    def compose(self, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """One batch and, per sample, the random sample it was mined for (-1 = random)."""
        half = self.batch_size // 2 if self.topk is not None else self.batch_size
        batch: list[int] = []
        partners: list[int] = []
        used: set[int] = set()

        def add(i: int, partner: int) -> None:
            batch.append(i)
            partners.append(partner)
            used.update(self.tiles[i].tolist())

        while len(batch) < half:
            add(self._random(rng, used), -1)
        for anchor in list(batch):
            if len(batch) == self.batch_size:
                break
            mined = self._mined(rng, anchor, used)
            if mined is None:
                add(self._random(rng, used), -1)
            else:
                add(mined, anchor)
        while len(batch) < self.batch_size:
            add(self._random(rng, used), -1)
        return batch, partners

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for step in range(len(self.positives) // self.batch_size):
            batch = self.compose(rng)[0]  # skipped batches still advance the generator
            if step >= self.skip:
                yield batch
