"""The generated worlds grow with the pairs asked of them, refuse what cannot fit at once,
keep the default world's data, and fall back to memory when the cache cannot be written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data import synthetic, synthetic_vigor
from benchmark.data.synthetic import SyntheticOptions, build_synthetic, sample_points
from benchmark.data.synthetic_vigor import SyntheticVigorOptions, build_synthetic_vigor
from benchmark.data.world import World, WorldParams
from benchmark.data.world_cache import cache_dir
from benchmark.data.world_plan import DEFAULT_MAP_PX, Plan, split_counts
from benchmark.errors import BenchmarkError
from tests.conftest import TINY_WORLD

# Small images on a small map: generation in a fraction of a second per map.
SMALL = {"ground_px": (8, 32), "aerial_px": 8, "tile_metres": 32.0, "min_spacing": 2.0}

# What the default map (seed 0, 1536 px) generated before worlds could hold several maps,
# for a small request on it (rows 0, 1, n//2 and -1; per-image means of the same rows).
# Tolerances: positions are float64 draws and comparisons (1e-3 m is far below any change
# of a point); an image mean moves by 0.002 levels per flipped pixel, so 0.05 levels
# absorbs the rare pixel that other CPUs' float rounding (tan/cos in the ray caster, the
# uint8 cast) can flip, while a changed point, map or random sequence moves it by levels.
DEFAULT_SYNTHETIC = {
    "train_xy": [
        [133.4884, 713.3236],
        [251.5293, 481.341],
        [231.3524, 658.4913],
        [345.9176, 616.806],
    ],
    "test_xy": [
        [425.0851, 181.1428],
        [54.5269, 64.8259],
        [454.0892, 144.2083],
        [203.1281, 36.9809],
    ],
    "train_ground": [114.159, 105.918, 101.825, 162.955],
    "train_aerial": [100.132, 96.757, 87.523, 87.302],
    "test_ground": [63.949, 66.497, 126.896, 122.005],
    "test_aerial": [102.462, 110.843, 99.931, 100.524],
}
DEFAULT_VIGOR = {
    "train_yx": [
        [144.7893, 463.2279],
        [62.9352, 57.1189],
        [447.3542, 457.9596],
        [560.9327, 49.7386],
    ],
    "test_yx": [
        [294.0184, 53.3666],
        [118.516, 712.8724],
        [397.4453, 570.7342],
        [128.2819, 326.9082],
    ],
    "train_ground": [75.439, 121.481, 124.282, 133.856],
    "test_ground": [108.794, 113.466, 138.238, 89.561],
    "all_aerial": [129.636, 123.803, 118.639, 113.552],
}
DEFAULT_VIGOR_IDS = {
    "all_distractors": [2, 28, 62, 69],
    "train_tiles": [[105, 82, 106, 83], [24, 1, 23, 0], [263, 286, 264, 287]],
    "test_tiles": [[185, 208, 184, 207], [90, 67, 91, 68], [331, 354, 332, 355]],
}


def generated(make: Any, shapes: dict, plan: Plan) -> dict[str, np.ndarray]:
    """The arrays MAKE(plan, arrays) fills, in memory."""
    arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in shapes.items()}
    make(plan, arrays)
    return arrays


def world(opts: SyntheticOptions, plan: Plan | None = None) -> dict[str, np.ndarray]:
    plan = plan or synthetic.plan(opts)
    return generated(lambda p, a: synthetic.generate(opts, p, a), synthetic.shapes(opts), plan)


def vigor_world(opts: SyntheticVigorOptions, split: str, plan: Plan) -> dict[str, np.ndarray]:
    def make(p: Plan, arrays: dict) -> None:
        synthetic_vigor.generate_vigor(opts, split, p, arrays)

    return generated(make, synthetic_vigor.shapes(opts, split, plan), plan)


def rows(a: np.ndarray) -> np.ndarray:
    return a[[0, 1, len(a) // 2, -1]]


def image_means(a: np.ndarray) -> np.ndarray:
    return rows(a).reshape(4, -1).astype(np.float64).mean(1)


def test_default_world_generates_the_data_it_always_has() -> None:
    opts = SyntheticOptions(n_train=260, n_test=20)  # two chunks of train images
    plan = synthetic.plan(opts)
    assert (plan.maps, plan.map_px) == (1, DEFAULT_MAP_PX)
    data = world(opts, plan)
    for name, expected in DEFAULT_SYNTHETIC.items():
        got = rows(data[name]) if name.endswith("_xy") else image_means(data[name])
        np.testing.assert_allclose(got, expected, atol=1e-3 if name.endswith("_xy") else 0.05)


def test_default_vigor_world_generates_the_data_it_always_has() -> None:
    opts = SyntheticVigorOptions(n_train=30, n_test=10)
    plan = synthetic_vigor.plan(opts, "same-area")
    assert (plan.maps, plan.map_px) == (1, DEFAULT_MAP_PX)
    data = vigor_world(opts, "same-area", plan)
    for name, expected in DEFAULT_VIGOR.items():
        got = rows(data[name]) if name.endswith("_yx") else image_means(data[name])
        np.testing.assert_allclose(got, expected, atol=1e-3 if name.endswith("_yx") else 0.05)
    for name, expected in DEFAULT_VIGOR_IDS.items():
        np.testing.assert_array_equal(data[name][: len(expected)], expected)


def test_leaderboard_and_default_requests_fit_one_standard_map() -> None:
    for n_train, n_test in ((2000, 500), (1000, 500)):
        plan = synthetic.plan(SyntheticOptions(n_train=n_train, n_test=n_test))
        assert (plan.maps, plan.map_px) == (1, 1536)
    for split in ("same-area", "cross-area"):
        assert synthetic_vigor.plan(SyntheticVigorOptions(), split).maps == 1


@pytest.mark.parametrize("n_train", [10_000, 100_000])
def test_large_request_spreads_over_standard_maps(n_train: int) -> None:
    opts = SyntheticOptions(n_train=n_train)
    plan = synthetic.plan(opts)
    assert plan.maps > 1 and plan.map_px == DEFAULT_MAP_PX
    assert sum(plan.counts["train"]) == n_train and sum(plan.counts["test"]) == 500
    one_map = synthetic.plan(SyntheticOptions(n_train=max(plan.counts["train"]), map_px=1536))
    assert one_map.maps == 1  # each map's share fits one map
    fewer = SyntheticOptions(n_train=-(-n_train // (plan.maps - 1)), map_px=1536)
    with pytest.raises(BenchmarkError):
        synthetic.plan(fewer)  # and one map fewer would not do
    vigor = synthetic_vigor.plan(SyntheticVigorOptions(n_train=n_train), "same-area")
    assert vigor.maps > 1 and sum(vigor.counts["train"]) == n_train


def test_explicit_map_too_small_is_refused_naming_what_fits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(synthetic, "generate", pytest.fail)  # never reached
    before = set(cache_dir().glob("*")) if cache_dir().exists() else set()
    results = tmp_path / "results"
    code = main(
        f"run --plugins safa --dataset synthetic --device cpu --results-dir {results} "
        "--set dataset_options.n_train=10000 --set dataset_options.map_px=1536".split()
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "dataset_options.map_px=1536 makes one 768 m map, which holds at most" in err
    assert "but 10,000 training pairs were asked for. Lower dataset_options.n_train" in err
    assert "or leave map_px unset" in err
    assert not results.exists() or not any(results.iterdir())
    assert (set(cache_dir().glob("*")) if cache_dir().exists() else set()) == before
    code = main(
        f"run --plugins vigor --dataset synthetic-vigor --device cpu --results-dir {results} "
        "--set dataset_options.n_test=8000 --set dataset_options.map_px=1024".split()
    )
    err = capsys.readouterr().err
    assert code == 2 and "training and test panoramas" in err and "n_train or" in err


def test_the_largest_count_named_fits_and_the_size_named_holds_the_request() -> None:
    opts = {**SMALL, "map_px": 256, "n_test": 20}
    with pytest.raises(BenchmarkError) as err:
        synthetic.plan(SyntheticOptions(**opts, n_train=5000))
    message = str(err.value)
    most = int(re.search(r"at most ([\d,]+) training", message)[1].replace(",", ""))
    bigger = int(re.search(r"map_px to ([\d,]+) or more", message)[1].replace(",", ""))
    data = world(SyntheticOptions(**opts, n_train=most))  # placed without stalling
    assert len(data["train_xy"]) == most
    with pytest.raises(BenchmarkError):
        synthetic.plan(SyntheticOptions(**opts, n_train=most + 1))
    assert synthetic.plan(SyntheticOptions(**{**opts, "map_px": bigger}, n_train=5000)).maps == 1
    with pytest.raises(BenchmarkError):
        synthetic.plan(SyntheticOptions(**{**opts, "map_px": bigger - 64}, n_train=5000))


def test_several_maps_keep_map_zero_and_train_test_apart() -> None:
    opts = SyntheticOptions(**SMALL, n_train=30, n_test=12)
    counts = {"train": split_counts(30, 3), "test": split_counts(12, 3)}
    three = world(opts, Plan(256, 3, counts))
    one_map = SyntheticOptions(**SMALL, n_train=10, n_test=4)
    one = world(one_map, Plan(256, 1, {"train": (10,), "test": (4,)}))
    for side in ("train", "test"):  # map 0 is the one-map world of the same size
        for kind in ("xy", "ground", "aerial"):
            first = three[f"{side}_{kind}"][: len(one[f"{side}_xy"])]
            np.testing.assert_array_equal(first, one[f"{side}_{kind}"])
    size, tile = 128.0, SMALL["tile_metres"]
    for i in range(3):
        train = three["train_xy"][10 * i : 10 * (i + 1)] - [0, 2 * size * i]
        test = three["test_xy"][4 * i : 4 * (i + 1)] - [0, 2 * size * i]
        assert train.min() >= tile / 2 and train.max() <= size - tile / 2  # inside map i
        assert test.min() >= tile / 2 and test.max() <= size - tile / 2
        assert test[:, 1].max() + tile / 2 <= train[:, 1].min() - tile / 2  # tiles disjoint
    maps = three["train_aerial"].reshape(3, 10, -1).astype(float).mean((1, 2))
    assert len(set(np.round(maps, 3))) == 3  # three different places
    np.testing.assert_array_equal(
        world(opts, Plan(256, 3, counts))["train_ground"], three["train_ground"]
    )


@pytest.mark.parametrize("split", ["same-area", "cross-area"])
def test_several_vigor_maps_have_their_own_tiles_and_labels(split: str) -> None:
    opts = SyntheticVigorOptions(**SMALL, n_train=16, n_test=8, map_px=384)
    counts = {"train": split_counts(16, 2), "test": split_counts(8, 2)}
    data = vigor_world(opts, split, Plan(384, 2, counts))
    for side in ("train", "test"):
        region = "all" if split == "same-area" else side
        tiles = data[f"{region}_centres"]
        per_map = len(tiles) // 2
        labels = data[f"{side}_tiles"]
        for i, rows_of_map in enumerate(np.split(labels, [counts[side][0]])):
            assert rows_of_map.min() >= i * per_map and rows_of_map.max() < (i + 1) * per_map
        # every label tile covers its point: the positive's centre within a quarter tile
        yx = data[f"{side}_yx"]
        np.testing.assert_array_less(np.abs(yx - tiles[labels[:, 0]]), 32.0 / 4 + 1e-9)
        assert not np.isin(labels, data[f"{region}_distractors"]).any()


def test_sampled_points_are_apart_and_on_open_ground() -> None:
    w = World(WorldParams(map_px=256))
    pts = sample_points(np.random.default_rng(0), w, 300, (16.0, 112.0, 16.0, 112.0), 2.0)
    gaps = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e9
    assert gaps.min() >= 2.0
    assert not w.height[(pts[:, 0] / 0.5).astype(int), (pts[:, 1] / 0.5).astype(int)].any()
    more = sample_points(np.random.default_rng(1), w, 50, (16.0, 112.0, 16.0, 112.0), 2.0, pts)
    assert np.linalg.norm(more[:, None] - pts[None], axis=-1).min() >= 2.0  # apart from TAKEN


def test_world_is_cached_memory_mapped_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {**TINY_WORLD, "seed": 5}
    first = build_synthetic(None, "test", options)
    monkeypatch.setattr(synthetic, "generate", pytest.fail)  # the second build reads the cache
    second = build_synthetic(None, "test", options)
    image = second.train.load_ground(3)
    np.testing.assert_array_equal(image, first.train.load_ground(3))
    image[:] = 0  # a writable copy: the cache is unchanged
    assert second.train.load_ground(3).any()
    assert first.info["world"]["maps"] == 1
    assert not list(cache_dir().glob(".*.tmp"))  # no temporary folder left behind


@pytest.mark.parametrize("fault", ["not a folder", "disk full"])
def test_unwritable_cache_falls_back_to_memory_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    options = {**TINY_WORLD, "seed": 6}
    expected = build_synthetic(None, "test", options).test.load_aerial(2)
    if fault == "not a folder":
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("CVGL_BENCHMARK_CACHE", str(tmp_path / "file" / "cache"))
    else:
        monkeypatch.setenv("CVGL_BENCHMARK_CACHE", str(tmp_path / "cache"))

        def full(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.warns(UserWarning, match="cannot hold the synthetic world.* in memory instead"):
        bundle = build_synthetic(None, "test", options)
    np.testing.assert_array_equal(bundle.test.load_aerial(2), expected)
    if fault == "disk full":  # nothing half-written is left in the cache
        assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    with pytest.warns(UserWarning, match="cannot hold the synthetic-vigor"):
        build_synthetic_vigor(
            None, "same-area", {**SMALL, "n_train": 8, "n_test": 4, "map_px": 256}
        )
