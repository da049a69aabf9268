"""Evaluation protocols on ground panoramas: exact shifts and crops, fixed by seed."""

import numpy as np
import pytest

from benchmark.data.base import CrossViewSplit
from benchmark.data.transforms import GroundProtocol, crop_field_of_view, shift_panorama


def panorama(width: int = 360, height: int = 4) -> np.ndarray:
    """Column j holds the value j (mod 256) in every row and channel: azimuths are readable."""
    cols = np.arange(width, dtype=np.int64) % 256
    return np.broadcast_to(cols[None, :, None], (height, width, 3)).astype(np.uint8).copy()


def test_shift_by_the_full_width_is_the_identity() -> None:
    image = np.random.default_rng(0).integers(0, 255, (8, 100, 3), dtype=np.uint8)
    np.testing.assert_array_equal(shift_panorama(image, 100), image)
    np.testing.assert_array_equal(shift_panorama(shift_panorama(image, 37), -37), image)
    assert not np.array_equal(shift_panorama(image, 1), image)


@pytest.mark.parametrize("degrees", [70, 90, 180])
@pytest.mark.parametrize("width", [360, 512, 1232])
def test_fov_crop_width_matches_degrees(degrees: int, width: int) -> None:
    image = np.random.default_rng(1).integers(0, 255, (4, width, 3), dtype=np.uint8)
    crop = crop_field_of_view(image, degrees, start=width - 5)  # wraps past the seam
    assert crop.shape == (4, round(width * degrees / 360), 3)
    np.testing.assert_array_equal(crop[:, :5], image[:, -5:])
    np.testing.assert_array_equal(crop[:, 5:], image[:, : crop.shape[1] - 5])


def test_unknown_orientation_rotates_by_the_recorded_azimuth() -> None:
    image = panorama()
    protocol = GroundProtocol("unknown-orientation", seed=3)
    for index in range(5):
        out = protocol.apply(image, index)
        start = round(protocol.azimuth(index)) % 360
        assert out[0, 0, 0] == start % 256  # column 0 now looks at the drawn azimuth
        np.testing.assert_array_equal(shift_panorama(out, start), image)


def test_azimuths_are_fixed_by_seed_and_differ_between_seeds() -> None:
    image = panorama()
    a, b = GroundProtocol("unknown-orientation", 7), GroundProtocol("unknown-orientation", 7)
    c = GroundProtocol("unknown-orientation", 8)
    for index in range(4):
        np.testing.assert_array_equal(a.apply(image, index), b.apply(image, index))
    assert [a.azimuth(i) for i in range(4)] != [c.azimuth(i) for i in range(4)]
    assert len({round(a.azimuth(i)) for i in range(10)}) > 5  # per-image, not one global shift


def test_fov_keeps_scale_and_fills_the_rest_with_the_mean_colour() -> None:
    image = panorama()
    protocol = GroundProtocol("fov=90", seed=0, fill=(124, 116, 104))
    out = protocol.apply(image, 2)
    assert out.shape == image.shape
    start = round(protocol.azimuth(2)) % 360
    np.testing.assert_array_equal(out[:, :90], crop_field_of_view(image, 90, start))
    assert (out[:, 90:] == np.array([124, 116, 104], dtype=np.uint8)).all()


def test_protocols_touch_ground_images_only() -> None:
    ground, aerial = panorama(), np.zeros((8, 8, 3), np.uint8)
    split = CrossViewSplit("t", lambda i: ground, lambda j: aerial, 3, 3, np.arange(3))
    assert GroundProtocol("aligned").on(split) is split
    seen = GroundProtocol("unknown-orientation", 1).on(split)
    assert seen.load_aerial is split.load_aerial
    np.testing.assert_array_equal(seen.positives, split.positives)
    assert not np.array_equal(seen.load_ground(0), ground)
