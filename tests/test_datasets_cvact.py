"""CVACT_val and CVACT_test from ACT_data.mat and the ANU_data_* folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from benchmark.data.base import SourceGeometry
from benchmark.data.cvact import build_cvact, inventory, polar_pairs, read_mat
from benchmark.data.images import read_image
from benchmark.data.transforms import InputPipeline, polar_transform
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.specs import Preprocess
from tests.fixtures_datasets import code_colour, read_code, safa_polar, save, write_cvact


@pytest.fixture(scope="module")
def cvact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("CVACT")
    return root, write_cvact(root)


def assert_pairs(split, rows: np.ndarray, utm: np.ndarray) -> None:
    assert split.num_ground == split.num_aerial == len(rows)
    np.testing.assert_array_equal(split.ground_xy, utm[rows])
    np.testing.assert_array_equal(split.aerial_xy[split.positives], utm[rows])
    for i, r in enumerate(rows):
        for image in (split.load_ground(i), split.load_aerial(int(split.positives[i]))):
            assert np.abs(read_code(image) - code_colour(int(r))).max() < 4


def test_registered_with_both_splits() -> None:
    assert build_registry().dataset("cvact").splits == ("val", "test")


def test_val_split_counts_pairs_and_utm(cvact: tuple[Path, dict]) -> None:
    root, fx = cvact
    bundle = build_cvact(root, "val")
    assert_pairs(bundle.train, fx["train"], fx["utm"])
    assert_pairs(bundle.test, fx["val"], fx["utm"])
    assert bundle.train.load_ground(0).shape == (32, 64, 3)
    assert bundle.test.meta["ids"] == [fx["ids"][r] for r in fx["val"]]


def test_test_split_reads_valsetall_from_anu_data_test(cvact: tuple[Path, dict]) -> None:
    root, fx = cvact
    bundle = build_cvact(root, "test")
    assert_pairs(bundle.train, fx["train"], fx["utm"])
    assert_pairs(bundle.test, fx["test"], fx["utm"])
    assert bundle.test.num_ground == 18
    assert bundle.info["official_counts"]["test pairs"] == 92_802


def test_one_based_indices_reach_the_last_row(cvact: tuple[Path, dict]) -> None:
    root, fx = cvact
    data = read_mat(fx["mat"])
    rows = np.concatenate(
        [data.indices("trainSet", "trainInd"), data.indices("valSetAll", "valInd")]
    )
    assert sorted(rows.tolist()) == list(range(30))  # row 30 (1-based) is row 29


def test_metre_distances_between_pairs_are_utm(cvact: tuple[Path, dict]) -> None:
    root, fx = cvact
    test = build_cvact(root, "val").test
    d = np.linalg.norm(test.ground_xy[0] - test.aerial_xy[1])
    a, b = fx["val"][0], fx["val"][1]
    assert d == pytest.approx(np.hypot(13.5 * (a - b), 7.25 * (a - b)))


def test_middle_half_of_the_panorama_is_kept(cvact: tuple[Path, dict]) -> None:
    root, _ = cvact
    bundle = build_cvact(root, "val")
    assert bundle.geometry.ground_rows == (0.25, 0.75)
    pre = Preprocess(ground_size=(16, 64), aerial_size=(16, 64), polar=True)
    pano = bundle.train.load_ground(0)
    via_dataset = InputPipeline(pre, bundle.geometry).ground(pano)
    by_hand = InputPipeline(pre, SourceGeometry()).ground(pano[8:24])
    assert torch.equal(via_dataset, by_hand)


def test_mat_inside_anu_data_small_and_root_at_anu_data_small(tmp_path: Path) -> None:
    fx = write_cvact(tmp_path, mat_in_small=True)
    for root in (tmp_path, tmp_path / "ANU_data_small"):
        bundle = build_cvact(root, "test")
        assert bundle.test.num_ground == len(fx["test"])


def test_zero_based_or_foreign_mat_is_refused(tmp_path: Path) -> None:
    fx = write_cvact(tmp_path)
    mat = scipy.io.loadmat(fx["mat"])
    mat["valSet"]["valInd"][0, 0] = mat["valSet"]["valInd"][0, 0] * 0
    scipy.io.savemat(fx["mat"], {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(BenchmarkError, match="1-based"):
        build_cvact(tmp_path, "val")
    scipy.io.savemat(fx["mat"], {"panoIds": np.array(fx["ids"]), "utm": fx["utm"]})
    with pytest.raises(BenchmarkError, match="no 'trainSet'"):
        build_cvact(tmp_path, "val")


def test_missing_test_images_and_wrong_root_explain_the_tree(tmp_path: Path) -> None:
    write_cvact(tmp_path)
    (tmp_path / "ANU_data_test").rename(tmp_path / "elsewhere")
    assert build_cvact(tmp_path, "val").test.num_ground == 6
    with pytest.raises(BenchmarkError, match="ANU_data_test/"):
        build_cvact(tmp_path, "test")
    with pytest.raises(BenchmarkError) as err:
        build_cvact(tmp_path / "elsewhere", "val")
    assert "ACT_data.mat" in str(err.value) and "satview_polish/<panoId>" in str(err.value)


def test_prepared_polarmap_at_the_root_agrees_with_on_the_fly(tmp_path: Path) -> None:
    fx = write_cvact(tmp_path)
    tiles = tmp_path / "ANU_data_small" / "satview_polish"
    for r in fx["val"]:
        tile = read_image(tiles / f"{fx['ids'][r]}_satView_polish.jpg")
        save(tmp_path / "polarmap" / f"{fx['ids'][r]}_satView_polish.png", safa_polar(tile, 10, 40))
    pairs = polar_pairs(inventory(tmp_path, "val"), 3)
    names = [f"{fx['ids'][r]}_satView_polish.jpg" for r in fx["val"][:3]]
    assert [a.name for a, _ in pairs] == names
    for aerial, polar in pairs:
        own = np.round(polar_transform(read_image(aerial), 10, 40))
        assert np.abs(own - read_image(polar)).mean() < 0.5
