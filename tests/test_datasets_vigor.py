"""VIGOR same-area and cross-area from label lines, satellite lists and file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.data.vigor import (
    build_vigor,
    delta_to_gps,
    pano_latlon,
    tile_latlon,
)
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from tests.fixtures_datasets import (
    CITIES,
    REAL_NEWYORK_PANO,
    REAL_NEWYORK_TILE,
    code_colour,
    read_code,
    write_vigor,
)


@pytest.fixture(scope="module")
def vigor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("VIGOR")
    return root, write_vigor(root, corrected=True)


def labelled(info: dict, cities: tuple[str, ...], which: slice) -> list[tuple]:
    """(city, pano name, [(tile, d0, d1)] x 4) in the order the split files list them."""
    return [(c, p, tr) for c in cities for p, tr, _ in info["panos"][c][which]]


def test_registered_with_both_splits() -> None:
    assert build_registry().dataset("vigor").splits == ("same-area", "cross-area")


@pytest.mark.parametrize(
    ("split", "train", "test", "gallery"),
    [
        ("same-area", (CITIES, slice(0, None, 2)), (CITIES, slice(1, None, 2)), 64),
        ("cross-area", (CITIES[:2], slice(None)), (CITIES[2:], slice(None)), 32),
    ],
)
def test_splits_load_counts_positives_and_semi_positives(
    vigor: tuple[Path, dict], split: str, train: tuple, test: tuple, gallery: int
) -> None:
    root, info = vigor
    bundle = build_vigor(root, split)
    assert bundle.train.num_ground == 16 and bundle.test.num_ground == 16
    assert bundle.test.num_aerial == gallery  # every tile of the test cities
    for part, (cities, which) in ((bundle.train, train), (bundle.test, test)):
        expected = labelled(info, cities, which)
        assert part.semi_positives.shape == (16, 3) and part.offsets.shape == (16, 4, 2)
        for i, (city, _, triples) in enumerate(expected):
            tiles = [int(part.positives[i]), *part.semi_positives[i].tolist()]
            for j, (name, d0, d1) in zip(tiles, triples, strict=True):
                want = code_colour(info["tile_code"][(city, name)])
                assert np.abs(read_code(part.load_aerial(j)) - want).max() < 4
                assert part.meta["offsets_px"][i, tiles.index(j)].tolist() == [d0, d1]
        assert part.load_ground(0).shape == (16, 32, 3)


def test_positive_tile_holds_the_panorama_in_its_central_quarter(vigor: tuple[Path, dict]) -> None:
    root, _ = vigor
    test = build_vigor(root, "same-area").test
    assert test.aerial_tile_metres == pytest.approx(640 * 0.114)
    assert np.all(np.abs(test.meta["offsets_px"][:, 0]) <= 160)
    from_gps = test.ground_xy - test.aerial_xy[test.positives]
    assert np.all(np.abs(from_gps) <= test.aerial_tile_metres / 4)
    assert np.all(np.abs(test.meta["offsets_px"][:, 1:]) <= 320)


def test_offsets_in_metres_agree_with_the_gps_of_names(vigor: tuple[Path, dict]) -> None:
    root, _ = vigor
    part = build_vigor(root, "cross-area").train
    tiles = np.concatenate([part.positives[:, None], part.semi_positives], axis=1)
    reconstructed = part.aerial_xy[tiles] + part.offsets
    assert np.abs(reconstructed - part.ground_xy[:, None, :]).max() < 0.2  # 6-decimal names


def test_gps_from_label_offsets_matches_the_panorama_name(vigor: tuple[Path, dict]) -> None:
    root, info = vigor
    name, triples, _ = info["panos"]["NewYork"][0]
    assert name == REAL_NEWYORK_PANO and triples[0][0] == REAL_NEWYORK_TILE
    assert triples[0][1] == pytest.approx(-67.63, abs=0.01)  # VIGOR's delta for this pair
    assert triples[0][2] == pytest.approx(-23.18, abs=0.01)
    for city in CITIES:
        for name, triples, _ in info["panos"][city]:
            for tile, d0, d1 in triples:
                lat, lon = delta_to_gps(tile_latlon(tile), (d0, d1))
                assert (lat, lon) == pytest.approx(pano_latlon(name), abs=1e-6)


def test_cities_are_far_apart_in_the_metric_plane(vigor: tuple[Path, dict]) -> None:
    root, _ = vigor
    test = build_vigor(root, "same-area").test
    ny, chicago = test.aerial_xy[0], test.aerial_xy[-1]
    assert np.linalg.norm(ny - chicago) > 1e6


def test_corrected_labels_are_used_when_asked(vigor: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = vigor
    original = build_vigor(root, "same-area").test.meta["offsets_px"]
    corrected = build_vigor(root, "same-area", {"labels": "corrected"})
    assert corrected.test.meta["labels"] == "corrected"
    np.testing.assert_allclose(corrected.test.meta["offsets_px"][..., 0], original[..., 0] + 1)
    write_vigor(tmp_path)
    with pytest.raises(BenchmarkError, match="splits__corrected/NewYork/"):
        build_vigor(tmp_path, "same-area", {"labels": "corrected"})


def test_reorganised_layout_loads_the_same(tmp_path: Path, vigor: tuple[Path, dict]) -> None:
    write_vigor(tmp_path, reorganised=True)
    bundle = build_vigor(tmp_path, "cross-area")
    reference = build_vigor(vigor[0], "cross-area")
    np.testing.assert_array_equal(bundle.test.positives, reference.test.positives)
    np.testing.assert_array_equal(bundle.test.load_ground(3), reference.test.load_ground(3))


def test_bad_label_line_and_wrong_root_are_explained(tmp_path: Path) -> None:
    write_vigor(tmp_path, per_city=2)
    with pytest.raises(BenchmarkError) as err:
        build_vigor(tmp_path / "NewYork", "same-area")
    assert "splits/Seattle/satellite_list.txt" in str(err.value)
    assert "NewYork/satellite/satellite_<lat>_<lon>.png" in str(err.value)  # the tree
    labels = tmp_path / "splits" / "Chicago" / "same_area_balanced_test.txt"
    labels.write_text(" ".join(labels.read_text().split()[:12]) + "\n")
    with pytest.raises(BenchmarkError, match="line 1 has 12 tokens"):
        build_vigor(tmp_path, "same-area")


def test_missing_tile_drops_its_queries_and_keeps_labels_right(tmp_path: Path) -> None:
    info = write_vigor(tmp_path)
    gone = info["panos"]["Chicago"][1][1][2][0]  # a semi-positive of a Chicago test panorama
    (tmp_path / "Chicago" / "satellite" / gone).unlink()
    with pytest.warns(UserWarning, match="missing"):
        test = build_vigor(tmp_path, "cross-area").test
    expected = [
        (c, p, tr)
        for c, p, tr in labelled(info, CITIES[2:], slice(None))
        if gone not in [t for t, _, _ in tr]
    ]
    assert test.num_aerial == 31 and test.num_ground == len(expected) < 16
    for i, (city, _, triples) in enumerate(expected):
        tiles = [int(test.positives[i]), *test.semi_positives[i].tolist()]
        for j, (name, _, _) in zip(tiles, triples, strict=True):
            want = code_colour(info["tile_code"][(city, name)])
            assert np.abs(read_code(test.load_aerial(j)) - want).max() < 4
