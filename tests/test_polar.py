"""The polar transform equals SAFA's formula evaluated pixel by pixel."""

import math

import numpy as np

from benchmark.data.transforms import polar_transform


def direct_polar(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """SAFA's formula, one output pixel at a time (bilinear, outside neighbours count 0)."""
    s = image.shape[0]
    out = np.zeros((height, width, image.shape[2]))
    for i in range(height):
        for j in range(width):
            r = (s / 2) * (height - 1 - i) / height
            theta = 2 * math.pi * j / width
            y = s / 2 + r * math.cos(theta)
            x = s / 2 - r * math.sin(theta)
            y0, x0 = int(y), int(x)
            dy, dx = y - y0, x - x0
            for yy, xx, w in (
                (y0, x0, (1 - dy) * (1 - dx)),
                (y0, x0 + 1, (1 - dy) * dx),
                (y0 + 1, x0, dy * (1 - dx)),
                (y0 + 1, x0 + 1, dy * dx),
            ):
                if 0 <= yy < s and 0 <= xx < s:
                    out[i, j] += w * image[yy, xx]
    return out


def test_polar_grid_matches_formula() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 37, 3)).astype(np.uint8)
    np.testing.assert_allclose(polar_transform(image, 9, 24), direct_polar(image, 9, 24), atol=1e-3)


def test_polar_orientation_north_at_centre_column() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    image[:16, :, 0] = 255  # the northern band (top rows) is red
    polar = polar_transform(image, 16, 64)
    top = polar[0, :, 0]  # outermost ring
    assert top[32] > 200  # centre column looks north
    assert top[0] < 50  # column 0 looks south
