"""Training augmentations: what each does to a batch, that the draws depend on the sample and
the step only, and that an augmentation a model cannot take is skipped and said so."""

from __future__ import annotations

import pytest
import torch

from benchmark.data.augment import (
    build_augmenter,
    centre_crop_resize,
    circular_shift,
    rotate90,
)
from benchmark.specs import Preprocess

POLAR = Preprocess(ground_size=(4, 16), aerial_size=(4, 16), polar=True)
TILE = Preprocess(ground_size=(4, 16), aerial_size=(8, 8), polar=False)


def azimuth_batch(b: int, width_g: int = 16, width_a: int = 16) -> dict[str, torch.Tensor]:
    """Ground and polar aerial images whose every pixel holds its column's azimuth (degrees)."""
    ground = torch.arange(width_g).float() * 360 / width_g
    aerial = torch.arange(width_a).float() * 360 / width_a
    return {
        "ground": ground.expand(b, 3, 4, width_g).clone(),
        "aerial": aerial.expand(b, 3, 4, width_a).clone(),
        "index": torch.arange(b),
    }


def test_circular_shift_rolls_each_image_by_its_own_columns() -> None:
    x = torch.randn(3, 2, 4, 10)
    shifts = torch.tensor([0, 3, 9])
    out = circular_shift(x, shifts)
    for b in range(3):
        torch.testing.assert_close(out[b], torch.roll(x[b], -int(shifts[b]), dims=-1))


@pytest.mark.parametrize("width_a", [16, 8])
def test_joint_shift_keeps_ground_and_aerial_azimuths_together(width_a: int) -> None:
    augment = build_augmenter(["circular-shift"], POLAR, False, seed=0)
    data = azimuth_batch(6, width_a=width_a)
    augment(data, epoch=0, step=0)
    starts_g = data["ground"][:, 0, 0, 0]
    starts_a = data["aerial"][:, 0, 0, 0]
    assert len(set(starts_g.tolist())) > 1  # the samples were shifted by different amounts
    # the first column of both views shows the same azimuth; a narrower aerial image has
    # coarser columns, so its shift is rounded to them: within half of one of its columns
    gap = (starts_g - starts_a).remainder(360)
    assert torch.all(torch.minimum(gap, 360 - gap) <= 180 / width_a)
    if width_a == 16:
        torch.testing.assert_close(data["ground"], data["aerial"])


def test_rotate90_turns_counter_clockwise_per_sample() -> None:
    x = torch.arange(2 * 1 * 3 * 3).float().reshape(2, 1, 3, 3).repeat(4, 1, 1, 1)
    turns = torch.tensor([0, 1, 2, 3] * 2)
    out = rotate90(x, turns)
    for b in range(8):
        torch.testing.assert_close(out[b], torch.rot90(x[b], int(turns[b]), dims=(1, 2)))
    # counter-clockwise: the top-right pixel of an upright image becomes its top-left
    assert out[1, 0, 0, 0] == x[1, 0, 0, 2]


def test_centre_crop_resize_magnifies_about_the_centre() -> None:
    width = 16
    ramp = torch.arange(width).float().expand(3, 1, width, width).clone()
    out = centre_crop_resize(ramp, torch.tensor([1.0, 0.5, 0.75]))
    assert torch.equal(out[0], ramp[0])  # uncropped images are left exactly as they were
    centre = (width - 1) / 2
    for b, f in ((1, 0.5), (2, 0.75)):
        # bilinear sampling reproduces a linear ramp exactly: column i shows c + f (i - c)
        expected = centre + f * (torch.arange(width).float() - centre)
        torch.testing.assert_close(out[b, 0, width // 2], expected, atol=1e-4, rtol=0)


def test_crop_rotate_draws_follow_cvm_nets_loader() -> None:
    """Crop in 236 of 748 draws (side 513..748 of 750 px), k x 90 degrees with k in 0..4."""
    augment = build_augmenter(["aerial-crop-rotate"], TILE, False, seed=0)
    n = 3000
    data = {"aerial": torch.ones(n, 1, 8, 8), "index": torch.arange(n)}
    data["aerial"][:, :, 0, 0] = 0.0  # a marker in the top-left corner shows the rotation
    augment(data, epoch=0, step=0)
    marked = data["aerial"][:, 0] == 0
    # a crop of at least 513/750 of the side samples no closer than 1.1 px to the border, so
    # it loses the marker; binomial p = 236/748 = 0.316 over 3,000 draws: sd 0.0085
    cropped = ~marked.flatten(1).any(1)
    assert abs(cropped.float().mean().item() - 236 / 748) < 0.04
    # uncropped: the marker went counter-clockwise k corners, k = 0 or 4 (p = 2/5) else 1/5
    corners = {"upright": (0, 0), "k=1": (7, 0), "k=2": (7, 7), "k=3": (0, 7)}
    share = {k: marked[~cropped][:, r, c].float().mean().item() for k, (r, c) in corners.items()}
    assert abs(share["upright"] - 0.4) < 0.05 and sum(share.values()) == pytest.approx(1.0)
    for k in ("k=1", "k=2", "k=3"):  # sd about 0.009 over ~2,050 uncropped draws
        assert abs(share[k] - 0.2) < 0.05


def test_draws_depend_on_the_sample_and_step_not_the_batch() -> None:
    augment = build_augmenter(["circular-shift"], POLAR, False, seed=3)
    whole = azimuth_batch(4)
    augment(whole, epoch=1, step=5)
    alone = {k: v[2:3].clone() for k, v in azimuth_batch(4).items()}
    augment(alone, epoch=1, step=5)  # the same sample in another process's slice
    torch.testing.assert_close(alone["ground"][0], whole["ground"][2])
    later = azimuth_batch(4)
    augment(later, epoch=1, step=6)
    assert not torch.equal(later["ground"], whole["ground"])


def test_augmentations_a_model_cannot_take_are_skipped_with_the_reason() -> None:
    on_tiles = build_augmenter(["circular-shift", "aerial-crop-rotate"], TILE, False, 0)
    assert on_tiles.describe()["applied"] == ["aerial-crop-rotate"]
    assert "not polar" in on_tiles.describe()["skipped"]["circular-shift"]
    on_polar = build_augmenter(["circular-shift", "aerial-crop-rotate"], POLAR, False, 0)
    assert on_polar.describe()["applied"] == ["circular-shift"]
    assert "polar" in on_polar.describe()["skipped"]["aerial-crop-rotate"]
    with_offsets = build_augmenter(["aerial-crop-rotate"], TILE, True, 0)
    assert "offsets" in with_offsets.describe()["skipped"]["aerial-crop-rotate"]
