"""CVUSA from its distributed layout, and the shared image reading (cache, bad files)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.cvusa import build_cvusa, inventory, polar_pairs
from benchmark.data.images import MemmapImages, read_image
from benchmark.data.transforms import InputPipeline, polar_transform
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.specs import Preprocess
from tests.fixtures_datasets import code_colour, read_code, write_cvusa


@pytest.fixture(scope="module")
def cvusa_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("CVUSA")
    return root, write_cvusa(root, polar=(12, 48))


def assert_code(image: np.ndarray, k: int) -> None:
    assert np.abs(read_code(image) - code_colour(k)).max() < 4


def test_registered_with_its_split() -> None:
    spec = build_registry().dataset("cvusa")
    assert spec.splits == ("test",) and spec.needs_root


def test_splits_load_with_counts_and_pairs(cvusa_root: tuple[Path, dict]) -> None:
    root, ids = cvusa_root
    bundle = build_cvusa(root, "test")
    assert (bundle.train.num_ground, bundle.train.num_aerial) == (10, 10)
    assert (bundle.test.num_ground, bundle.test.num_aerial) == (6, 6)
    for split, side in ((bundle.train, "train"), (bundle.test, "test")):
        assert split.meta["ids"] == ids[side]
        for i in range(split.num_ground):
            ground, aerial = split.load_ground(i), split.load_aerial(int(split.positives[i]))
            assert ground.shape == (28, 154, 3) and ground.dtype == np.uint8
            assert aerial.shape == (48, 48, 3)
            assert_code(ground, int(ids[side][i]))
            assert_code(aerial, int(ids[side][i]))
    assert bundle.test.ground_xy is None  # CVUSA has no metric positions
    assert bundle.info["official_counts"] == {"train pairs": 35_532, "test pairs": 8_884}


def test_root_one_level_up_is_accepted(cvusa_root: tuple[Path, dict]) -> None:
    root, _ = cvusa_root
    (root.parent / "up").mkdir(exist_ok=True)
    link = root.parent / "up" / "CVUSA"
    if not link.exists():
        link.symlink_to(root)
    assert build_cvusa(root.parent / "up", "test").test.num_ground == 6


def test_wrong_root_names_what_is_missing_and_shows_the_tree(tmp_path: Path) -> None:
    (tmp_path / "splits").mkdir()
    with pytest.raises(BenchmarkError) as err:
        build_cvusa(tmp_path, "test")
    text = str(err.value)
    assert "splits/train-19zl.csv" in text and "bingmap/19" in text
    assert "streetview/panos/0000001.jpg" in text  # the expected tree


def test_prepared_polarmap_agrees_with_on_the_fly_transform(cvusa_root: tuple[Path, dict]) -> None:
    root, _ = cvusa_root
    pairs = polar_pairs(inventory(root, "test"), 4)
    assert len(pairs) == 4
    for aerial, polar in pairs:
        prepared = read_image(polar).astype(np.float32)
        own = polar_transform(read_image(aerial), *prepared.shape[:2])
        assert own.shape == prepared.shape
        assert np.abs(np.round(own) - prepared).mean() < 0.5
        assert np.abs(np.round(own) - prepared).max() <= 2


def test_memmap_cache_matches_decoding_and_is_reused(
    cvusa_root: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = cvusa_root
    direct = build_cvusa(root, "test")
    cached = build_cvusa(root, "test", {"cache_dir": str(tmp_path)})
    assert isinstance(cached.test.load_ground, MemmapImages)
    for i in range(direct.test.num_ground):
        np.testing.assert_array_equal(cached.test.load_ground(i), direct.test.load_ground(i))
        np.testing.assert_array_equal(cached.test.load_aerial(i), direct.test.load_aerial(i))
    files = sorted(tmp_path.glob("*.npy"))
    assert len(files) == 4  # train/test x ground/aerial
    stamps = [f.stat().st_mtime_ns for f in files]
    build_cvusa(root, "test", {"cache_dir": str(tmp_path)})
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.glob("*.npy"))] == stamps
    state = pickle.dumps(cached.test.load_ground)  # what a DataLoader worker receives
    assert len(state) < 2000


def test_memmap_cache_resizes_to_the_requested_size(
    cvusa_root: tuple[Path, dict], tmp_path: Path
) -> None:
    root, ids = cvusa_root
    opts = {"cache_dir": str(tmp_path), "cache_ground_size": (20, 80), "cache_aerial_size": 96}
    bundle = build_cvusa(root, "test", opts)
    assert bundle.test.load_ground(0).shape == (20, 80, 3)
    assert bundle.test.load_aerial(0).shape == (96, 96, 3)
    assert_code(bundle.test.load_aerial(0), int(ids["test"][0]))


def test_unreadable_image_is_named_or_skipped(tmp_path: Path) -> None:
    ids = write_cvusa(tmp_path, n_train=2, n_test=2)
    bad = tmp_path / "streetview/panos" / f"{ids['test'][1]}.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    bundle = build_cvusa(tmp_path, "test")
    with pytest.raises(BenchmarkError, match=str(bad)):
        bundle.test.load_ground(1)
    lenient = build_cvusa(tmp_path, "test", {"skip_bad_images": True})
    with pytest.warns(UserWarning, match="black ground image"):
        image = lenient.test.load_ground(1)
    assert image.shape == (28, 154, 3) and image.max() == 0


def test_partial_copy_loads_with_a_warning_and_the_count(tmp_path: Path) -> None:
    ids = write_cvusa(tmp_path, n_train=4, n_test=5)
    (tmp_path / "streetview/panos" / f"{ids['test'][2]}.jpg").unlink()
    with pytest.warns(UserWarning, match="missing"):
        bundle = build_cvusa(tmp_path, "test")
    assert bundle.test.num_ground == 4 and bundle.test.num_aerial == 5
    assert bundle.info["missing"]["test"]["dropped_pairs"] == 1
    kept = [i for k, i in enumerate(ids["test"]) if k != 2]
    for i in range(4):
        assert_code(bundle.test.load_aerial(int(bundle.test.positives[i])), int(kept[i]))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_any_image_mode_reads_as_rgb_uint8(tmp_path: Path, mode: str) -> None:
    from PIL import Image

    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    rgb = Image.new("RGB", (12, 8), (200, 30, 60))
    (rgb.quantize(4) if mode == "P" else rgb.convert(mode)).save(path)
    image = read_image(path)
    assert image.shape == (8, 12, 3) and image.dtype == np.uint8 and image.flags.writeable
    if mode != "L":
        assert np.abs(image[4, 6].astype(int) - (200, 30, 60)).max() < 12


def test_training_can_read_the_prepared_polarmap(cvusa_root: tuple[Path, dict]) -> None:
    root, _ = cvusa_root
    tiles = build_cvusa(root, "test")
    prepared = build_cvusa(root, "test", {"polarmap": True})
    assert prepared.geometry.aerial_polar and not tiles.geometry.aerial_polar
    polar_model = Preprocess((12, 48), (12, 48), polar=True)
    from_tiles = InputPipeline(polar_model, tiles.geometry)
    from_polarmap = InputPipeline(polar_model, prepared.geometry)
    assert from_polarmap.describe()["polar_sampling"].startswith("prepared polarmap/")
    for j in range(min(4, prepared.test.num_aerial)):
        own = from_tiles.aerial(tiles.test.load_aerial(j))
        read = from_polarmap.aerial(prepared.test.load_aerial(j))
        assert own.shape == read.shape == (3, 12, 48)
        assert (own - read).abs().mean() < 0.05  # the same image up to PNG rounding
    with pytest.raises(BenchmarkError, match="takes non-polar aerial images"):
        InputPipeline(Preprocess((12, 48), (16, 16), polar=False), prepared.geometry)
