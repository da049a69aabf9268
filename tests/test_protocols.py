"""Evaluation protocols on ground panoramas: exact batched shifts and crops, fixed by seed."""

import numpy as np
import pytest
import torch

from benchmark.data.transforms import GroundProtocol


def panorama(width: int = 360, height: int = 4) -> np.ndarray:
    """Column j holds the value j (mod 256) in every row and channel: azimuths are readable."""
    cols = np.arange(width, dtype=np.int64) % 256
    return np.broadcast_to(cols[None, :, None], (height, width, 3)).astype(np.uint8).copy()


def present(protocol: GroundProtocol, images: np.ndarray, indices: list[int]) -> np.ndarray:
    """PROTOCOL applied to a (B, H, W, 3) uint8 batch, back as numpy."""
    return protocol.present(torch.from_numpy(images), indices).numpy()


def start_column(protocol: GroundProtocol, index: int, width: int) -> int:
    return round(protocol.azimuth(index) / 360 * width) % width


def test_unknown_orientation_rotates_each_image_by_its_own_azimuth() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 6, 100, 3), dtype=np.uint8)
    protocol = GroundProtocol("unknown-orientation", seed=3)
    indices = [4, 0, 17, 3, 9]
    out = present(protocol, images, indices)
    for k, index in enumerate(indices):  # one batch, five different rotations (np.roll)
        start = start_column(protocol, index, 100)
        np.testing.assert_array_equal(out[k], np.roll(images[k], -start, axis=1))
    assert len({start_column(protocol, i, 100) for i in indices}) > 3


def test_column_zero_looks_at_the_recorded_azimuth() -> None:
    protocol = GroundProtocol("unknown-orientation", seed=3)
    out = present(protocol, np.stack([panorama()] * 5), list(range(5)))
    for index in range(5):
        assert out[index, 0, 0, 0] == round(protocol.azimuth(index)) % 360 % 256


def test_azimuths_are_fixed_by_seed_and_differ_between_seeds() -> None:
    images = np.stack([panorama()] * 4)
    a, b = GroundProtocol("unknown-orientation", 7), GroundProtocol("unknown-orientation", 7)
    c = GroundProtocol("unknown-orientation", 8)
    np.testing.assert_array_equal(
        present(a, images, [0, 1, 2, 3]), present(b, images, [0, 1, 2, 3])
    )
    assert [a.azimuth(i) for i in range(4)] != [c.azimuth(i) for i in range(4)]
    assert len({round(a.azimuth(i)) for i in range(10)}) > 5  # per-image, not one global shift


@pytest.mark.parametrize("degrees", [70, 90, 180])
@pytest.mark.parametrize("width", [360, 512, 1232])
def test_fov_keeps_scale_and_fills_the_rest_with_the_mean_colour(degrees: int, width: int) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 4, width, 3), dtype=np.uint8)
    protocol = GroundProtocol(f"fov={degrees}", seed=0, fill=(124, 116, 104))
    out = present(protocol, images, [0, 1, 2])
    keep = round(width * degrees / 360)
    assert out.shape == images.shape
    for k in range(3):
        start = start_column(protocol, k, width)
        np.testing.assert_array_equal(
            out[k, :, :keep], images[k][:, (start + np.arange(keep)) % width]
        )
        assert (out[k, :, keep:] == np.array([124, 116, 104], dtype=np.uint8)).all()


def test_mixed_size_batches_match_one_image_at_a_time() -> None:
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (4, w, 3), dtype=np.uint8) for w in (90, 120)]
    for name in ("unknown-orientation", "fov=90"):
        protocol = GroundProtocol(name, seed=5, fill=(1, 2, 3))
        mixed = protocol.present([torch.from_numpy(im) for im in images], [6, 7])
        for k, im in enumerate(images):
            np.testing.assert_array_equal(mixed[k].numpy(), present(protocol, im[None], [6 + k])[0])


def test_aligned_leaves_the_batch_untouched() -> None:
    batch = torch.from_numpy(np.stack([panorama()] * 2))
    assert GroundProtocol("aligned").present(batch, [0, 1]) is batch
