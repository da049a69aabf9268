"""Global hard-negative mining: no shared tiles in a batch, mined half from the top-k lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.data.base import CrossViewSplit
from benchmark.data.synthetic_vigor import four_tiles, tile_axis
from benchmark.errors import BenchmarkError
from benchmark.mining import MiningSampler, scaled_pool


def grid_split(n: int = 1500, seed: int = 0) -> CrossViewSplit:
    axis = tile_axis(0.0, 32.0 * 16, 32.0)  # 31 x 31 tiles
    rng = np.random.default_rng(seed)
    points = rng.uniform(axis[0], axis[-1], size=(n, 2))
    tiles = four_tiles(points, axis, axis)
    return CrossViewSplit(
        name="train",
        load_ground=lambda i: None,
        load_aerial=lambda j: None,
        num_ground=n,
        num_aerial=len(axis) ** 2,
        positives=tiles[:, 0],
        semi_positives=tiles[:, 1:],
    )


def shared_tile(sampler: MiningSampler, batch: list[int]) -> bool:
    tiles = sampler.tiles[batch].ravel()
    return len(set(tiles.tolist())) < len(tiles)


def warm(sampler: MiningSampler, split: CrossViewSplit, dim: int = 16) -> None:
    gen = torch.Generator().manual_seed(0)
    ground = torch.nn.functional.normalize(torch.randn(split.num_ground, dim, generator=gen), dim=1)
    aerial = torch.nn.functional.normalize(torch.randn(split.num_aerial, dim, generator=gen), dim=1)
    for s in range(0, split.num_ground, 100):
        idx = torch.arange(s, min(split.num_ground, s + 100))
        pos = torch.as_tensor(split.positives[idx.numpy()])
        sampler.observe(idx, ground[idx], pos, aerial[pos])


def test_pool_and_k_scale_down_to_the_dataset() -> None:
    assert scaled_pool(40_000, 100, 90_618) == (40_000, 100)
    assert scaled_pool(40_000, 100, 529) == (529, 10)
    assert scaled_pool(40_000, 100, 4) == (4, 4)


def test_random_batches_before_the_pool_share_no_tile() -> None:
    split = grid_split()
    sampler = MiningSampler(split, batch_size=14, seed=0)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert len(batches) == split.num_ground // 14
    assert all(len(b) == 14 and not shared_tile(sampler, b) for b in batches)
    assert sampler.topk is None


def test_mined_half_comes_from_the_top_k_lists_without_shared_tiles() -> None:
    split = grid_split()
    sampler = MiningSampler(split, batch_size=14, seed=0, pool=40_000, k=100)
    warm(sampler, split)
    sampler.set_epoch(1)
    assert sampler.topk is not None and sampler.topk.shape == (split.num_ground, sampler.k)
    # every positive tile was observed, and the pool (capped at the tile count) holds them all
    seen = np.flatnonzero(sampler.aerial_seen)
    sims = sampler.ground_cache[:5] @ sampler.aerial_cache[seen].T
    brute = seen[sims.topk(sampler.k, dim=1).indices.numpy()]
    np.testing.assert_array_equal(np.sort(sampler.topk[:5], 1), np.sort(brute, 1))
    rng = np.random.default_rng(3)
    mined = 0
    for _ in range(200):
        batch, partners = sampler.compose(rng)
        assert len(batch) == 14 and not shared_tile(sampler, batch)
        assert partners[:7] == [-1] * 7
        for i, anchor in zip(batch[7:], partners[7:], strict=True):
            if anchor >= 0:
                assert anchor in batch[:7]
                assert split.positives[i] in sampler.topk[anchor]
                mined += 1
    assert mined > 0.9 * 200 * 7


def test_impossible_batch_is_explained() -> None:
    split = CrossViewSplit(
        name="train",
        load_ground=lambda i: None,
        load_aerial=lambda j: None,
        num_ground=6,
        num_aerial=4,
        positives=np.array([0, 0, 1, 1, 2, 2]),
        semi_positives=np.array([[1, 2, 3]] * 2 + [[0, 2, 3]] * 2 + [[0, 1, 3]] * 2),
    )
    sampler = MiningSampler(split, batch_size=2, seed=0)  # every sample uses all 4 tiles
    with pytest.raises(BenchmarkError, match="share no tile"):
        list(sampler)


def test_mid_epoch_start_skips_whole_batches_of_the_same_epoch() -> None:
    split = grid_split()
    sampler = MiningSampler(split, batch_size=14, seed=0)
    sampler.set_epoch(0)
    full = list(sampler)
    sampler.set_epoch(0, start=3 * 14)
    assert len(sampler) == len(full) - 3
    assert list(sampler) == full[3:]
