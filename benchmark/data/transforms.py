"""Image transforms of the data path: polar transform, crop, resize, normalise."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.base import SourceGeometry
from benchmark.specs import Preprocess

RESIZE = "torch.nn.functional.interpolate(bilinear, antialias=True, align_corners=False)"


@dataclass(frozen=True)
class PolarGrid:
    """Precomputed bilinear sampling of SAFA's polar transform for one (S, H, W)."""

    index: np.ndarray  # (4, H*W) flat source indices (clipped)
    weight: np.ndarray  # (4, H*W) bilinear weights, 0 for neighbours outside the image
    out_shape: tuple[int, int]


@lru_cache(maxsize=32)
def polar_grid(size: int, height: int, width: int) -> PolarGrid:
    """The sampling grid mapping an SxS aerial image to an HxW polar image (SAFA's formula)."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    r = (size / 2.0) * (height - 1 - i) / height
    theta = 2.0 * np.pi * j / width
    row = size / 2.0 + r * np.cos(theta)
    col = size / 2.0 - r * np.sin(theta)
    r0 = np.floor(row).astype(np.int64)
    c0 = np.floor(col).astype(np.int64)
    dr, dc = row - r0, col - c0
    idx, wts = [], []
    for rr, cc, w in (
        (r0, c0, (1 - dr) * (1 - dc)),
        (r0, c0 + 1, (1 - dr) * dc),
        (r0 + 1, c0, dr * (1 - dc)),
        (r0 + 1, c0 + 1, dr * dc),
    ):
        inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        idx.append((np.clip(rr, 0, size - 1) * size + np.clip(cc, 0, size - 1)).ravel())
        wts.append(np.where(inside, w, 0.0).ravel())
    return PolarGrid(np.stack(idx), np.stack(wts).astype(np.float32), (height, width))


def polar_transform(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Polar-transform a square HxWxC aerial image to (height, width, C) float32."""
    size = image.shape[0]
    if image.shape[1] != size:
        raise ValueError(f"polar transform needs a square aerial image, got {image.shape[:2]}")
    grid = polar_grid(size, height, width)
    flat = image.reshape(size * size, -1).astype(np.float32)
    out = np.einsum("kn,knc->nc", grid.weight, flat[grid.index])
    return out.reshape(height, width, -1)


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a CxHxW float tensor to SIZE with the harness's one stated method (RESIZE)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


class InputPipeline:
    """Turns a dataset's raw uint8 images into a model's normalised input tensors."""

    def __init__(self, preprocess: Preprocess, geometry: SourceGeometry) -> None:
        self.pre = preprocess
        self.geometry = geometry
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(3, 1, 1)
        self.mean, self.std = mean, std

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = (x / 255.0 - self.mean) / self.std
        return x.flip(0) if self.pre.bgr else x

    def ground(self, image: np.ndarray) -> torch.Tensor:
        """Crop the kept panorama rows, resize, normalise."""
        h = image.shape[0]
        a, b = self.geometry.ground_rows
        image = image[int(round(a * h)) : int(round(b * h))]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        return self._finish(resize(x, self.pre.ground_size))

    def aerial(self, image: np.ndarray) -> torch.Tensor:
        """Polar-transform from the full-size tile (or resize), normalise."""
        if self.pre.polar:
            polar = polar_transform(image, *self.pre.aerial_size)
            x = torch.from_numpy(polar).permute(2, 0, 1)
        else:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
            x = resize(x, self.pre.aerial_size)
        return self._finish(x)

    def describe(self) -> dict[str, object]:
        """The preprocessing actually applied, for the result file."""
        return {
            "ground_size": list(self.pre.ground_size),
            "aerial_size": list(self.pre.aerial_size),
            "polar": self.pre.polar,
            "ground_rows": list(self.geometry.ground_rows),
            "mean": list(self.pre.mean),
            "std": list(self.pre.std),
            "channel_order": "BGR" if self.pre.bgr else "RGB",
            "resize": RESIZE,
            "polar_sampling": "bilinear from the full-size tile (SAFA formula)",
        }
