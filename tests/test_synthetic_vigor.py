"""The synthetic VIGOR world: tile overlap, positive/semi-positive labels, offsets, splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmark.data.synthetic_vigor import build_synthetic_vigor, four_tiles, tile_axis
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry

VIGOR_WORLD: dict[str, Any] = {
    "n_train": 16,
    "n_test": 8,
    "map_px": 384,
    "ground_px": [16, 64],
    "aerial_px": 24,
    "tile_metres": 32.0,
    "min_spacing": 2.0,
    "test_fraction": 0.4,
    "distractor_fraction": 0.05,
}


@pytest.fixture(scope="module", params=["same-area", "cross-area"])
def bundle(request: pytest.FixtureRequest):
    return build_synthetic_vigor(None, request.param, VIGOR_WORLD)


def test_registered_with_both_splits() -> None:
    spec = build_registry().dataset("synthetic-vigor")
    assert spec.splits == ("same-area", "cross-area") and not spec.needs_root


def test_positive_centre_within_quarter_tile_and_semis_cover_the_point(bundle) -> None:
    tile = bundle.train.aerial_tile_metres
    for split in (bundle.train, bundle.test):
        pos_xy = split.aerial_xy[split.positives]
        assert np.all(np.abs(split.ground_xy - pos_xy) <= tile / 4 + 1e-9)
        semi_xy = split.aerial_xy[split.semi_positives]  # (n, 3, 2)
        gap = np.abs(split.ground_xy[:, None] - semi_xy)
        assert np.all(gap <= tile / 2 + 1e-9)  # inside each semi-positive tile
        assert np.all(gap.max(-1) > tile / 4 - 1e-9)  # but not in its central square
        four = np.concatenate([split.positives[:, None], split.semi_positives], 1)
        assert all(len(set(row)) == 4 for row in four.tolist())
        np.testing.assert_allclose(
            split.offsets, split.ground_xy[:, None] - split.aerial_xy[four], atol=1e-9
        )


def test_tiles_overlap_by_half_and_distractors_cover_no_panorama(bundle) -> None:
    tile = bundle.train.aerial_tile_metres
    for split in (bundle.train, bundle.test):
        xs = np.unique(np.round(split.aerial_xy[:, 0], 6))
        np.testing.assert_allclose(np.diff(xs), tile / 2)
        distractors = split.meta["distractor_tiles"]
        assert distractors
        covered = np.concatenate([split.positives[:, None], split.semi_positives], 1)
        assert not np.isin(covered, distractors).any()
        pts = split.ground_xy
        pos_xy = split.aerial_xy[split.positives]
        assert np.linalg.norm(pts - pos_xy, axis=1).max() > 1.0  # not at tile centres
        assert split.load_aerial(0).shape == (24, 24, 3)
        assert split.load_ground(0).shape == (16, 64, 3)


def test_split_geography(bundle) -> None:
    train, test = bundle.train, bundle.test
    if bundle.split == "same-area":
        np.testing.assert_array_equal(train.aerial_xy, test.aerial_xy)
    else:
        tile = train.aerial_tile_metres
        assert (
            test.aerial_xy[:, 0].max() + tile / 2 <= train.aerial_xy[:, 0].min() - tile / 2 + 1e-9
        )
        assert test.ground_xy[:, 0].max() < train.ground_xy[:, 0].min()


def test_four_tiles_on_a_hand_grid() -> None:
    ys = xs = tile_axis(0.0, 64.0, 32.0)  # centres 16, 32, 48
    tiles = four_tiles(np.array([[20.0, 45.0], [32.0, 32.0]]), ys, xs)
    # (20, 45): nearest (16, 48) = id 2; towards the point: row +1, col -1
    assert tiles[0].tolist() == [2, 5, 1, 4]
    assert tiles[1].tolist() == [4, 7, 5, 8]


def test_unknown_split_and_too_small_region_are_explained() -> None:
    with pytest.raises(BenchmarkError, match="same-area' and 'cross-area'"):
        build_synthetic_vigor(None, "test", VIGOR_WORLD)
    with pytest.raises(BenchmarkError, match="fewer than 2 tiles"):
        tile_axis(0.0, 40.0, 32.0)
