"""The recipes' training augmentations, as batched tensor operations on model inputs.

The training loop applies them to a batch right after it reaches the device, never at
evaluation. Each sample's random draws come from
``numpy.random.default_rng([seed, epoch, step, index, salt])``: a function of where training
is, not of how many processes share the batch or whether the run was resumed.

- ``circular-shift`` (SAIG's CVUSA loader): the ground panorama and its polar aerial image
  are shifted together by one random number of columns (a random azimuth), so their
  correspondence is kept. SAIG shifts only polar inputs; on a non-polar aerial it is skipped.
- ``aerial-crop-rotate`` (CVM-Net's loader): the aerial tile is cropped about its centre
  with probability 236/748, to a side drawn uniformly from 513..748 of its 750 px (kept here
  as a fraction of the side), resized back, then rotated by k x 90 degrees counter-clockwise
  with k drawn from {0, 1, 2, 3, 4} (so 0 and 360 both leave it upright). The official
  loader crops the raw tile before resizing it; here the crop acts on the model input, which
  differs only by resampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.specs import Preprocess

CVM_TILE_PX = 750  # CVUSA's aerial side, on which CVM-Net's crop sizes are drawn
CVM_CROP_MIN = 513  # a draw above 512 crops
CVM_CROP_MAX = 748


def circular_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Each image of X (B, C, H, W) rolled left by SHIFTS[b] columns:
    out[b, ..., j] = x[b, ..., (j + shifts[b]) mod W]."""
    width = x.shape[-1]
    cols = (torch.arange(width, device=x.device) + shifts.to(x.device)[:, None]) % width
    return torch.gather(x, 3, cols[:, None, None, :].expand_as(x))


def rotate90(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each square image of X (B, C, S, S) rotated counter-clockwise by TURNS[b] x 90 degrees."""
    out = x.clone()
    for k in (1, 2, 3):
        rows = torch.nonzero(turns == k).flatten().to(x.device)
        if len(rows):
            out[rows] = torch.rot90(x[rows], k, dims=(2, 3))
    return out


def centre_crop_resize(x: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Each image of X (B, C, H, W) cropped about its centre to FRACTIONS[b] of its sides and
    resized back (bilinear); a fraction of 1 leaves the image exactly as it was."""
    out = x.clone()
    rows = torch.nonzero(fractions < 1).flatten()
    if len(rows):
        f = fractions[rows].to(device=x.device, dtype=torch.float32)
        theta = torch.zeros(len(rows), 2, 3, device=x.device)
        theta[:, 0, 0] = f
        theta[:, 1, 1] = f
        sub = x[rows.to(x.device)]
        grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
        out[rows.to(x.device)] = F.grid_sample(
            sub.float(), grid, mode="bilinear", align_corners=False
        ).to(x.dtype)
    return out


def _circular_shift(data: dict[str, Any], rngs: list[np.random.Generator]) -> None:
    width_g = data["ground"].shape[-1]
    shifts = torch.tensor([int(r.integers(width_g)) for r in rngs])
    data["ground"] = circular_shift(data["ground"], shifts)
    for key in ("aerial", "semi"):
        if key in data:  # the same azimuth in the aerial image's own column count
            width = data[key].shape[-1]
            data[key] = circular_shift(data[key], torch.round(shifts * width / width_g).long())


def _aerial_crop_rotate(data: dict[str, Any], rngs: list[np.random.Generator]) -> None:
    sides = np.array([int(r.integers(1, CVM_CROP_MAX + 1)) for r in rngs])
    turns = torch.tensor([int(r.integers(0, 5)) % 4 for r in rngs])
    fractions = torch.from_numpy(np.where(sides >= CVM_CROP_MIN, sides / CVM_TILE_PX, 1.0))
    data["aerial"] = rotate90(centre_crop_resize(data["aerial"], fractions), turns)


def _needs_polar(pre: Preprocess, has_offsets: bool) -> str | None:
    if not pre.polar:
        return "the aerial input is not polar (SAIG's loader shifts polar inputs only)"
    return None


def _needs_square_tile(pre: Preprocess, has_offsets: bool) -> str | None:
    if pre.polar:
        return "it rotates north-up tiles and this model's aerial input is polar"
    if pre.aerial_size[0] != pre.aerial_size[1]:
        return f"it rotates square tiles and this model's aerial input is {pre.aerial_size}"
    if has_offsets:
        return "rotating a tile would invalidate the metric offsets of this dataset's labels"
    return None


@dataclass(frozen=True)
class Augmentation:
    """A named augmentation: APPLY(batch, one generator per sample) edits the batch in place;
    UNUSABLE(preprocess, has_offsets) says why it cannot apply to a model, or None."""

    name: str
    apply: Callable[[dict[str, Any], list[np.random.Generator]], None]
    unusable: Callable[[Preprocess, bool], str | None]
    salt: int


AUGMENTATIONS = {
    a.name: a
    for a in (
        Augmentation("circular-shift", _circular_shift, _needs_polar, 1),
        Augmentation("aerial-crop-rotate", _aerial_crop_rotate, _needs_square_tile, 2),
    )
}


def check_names(names: list[str]) -> list[str]:
    """NAMES if every one is a known augmentation, else a ValueError naming the known ones."""
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(unknown)}; known: {', '.join(sorted(AUGMENTATIONS))}"
        )
    return names


@dataclass
class Augmenter:
    """The configured augmentations that apply to one model, called on each training batch."""

    active: list[Augmentation]
    seed: int
    skipped: dict[str, str] = field(default_factory=dict)

    def __call__(self, data: dict[str, Any], epoch: int, step: int) -> None:
        """Augment DATA (this process's rows of batch STEP of EPOCH) in place."""
        for aug in self.active:
            rngs = [
                np.random.default_rng([self.seed, epoch, step, int(i), aug.salt])
                for i in data["index"]
            ]
            aug.apply(data, rngs)

    def describe(self) -> dict[str, Any]:
        """What a result records: the augmentations applied and those skipped, with why."""
        return {"applied": [a.name for a in self.active], "skipped": dict(self.skipped)}


def build_augmenter(names: list[str], pre: Preprocess, has_offsets: bool, seed: int) -> Augmenter:
    """The augmenter of NAMES for a model with input contract PRE; an augmentation that cannot
    apply is skipped with its reason (recorded), as the official loaders do. NAMES are
    known ones (the run configuration checks them)."""
    active, skipped = [], {}
    for name in names:
        aug = AUGMENTATIONS[name]
        reason = aug.unusable(pre, has_offsets)
        if reason is None:
            active.append(aug)
        else:
            skipped[name] = reason
    return Augmenter(active, seed, skipped)
