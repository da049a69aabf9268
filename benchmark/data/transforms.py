"""Image transforms of the data path: polar transform, crop, resize, normalise."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.base import CrossViewSplit, SourceGeometry
from benchmark.errors import BenchmarkError
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
    near = image.reshape(size * size, -1)[grid.index]  # (4, H*W, C): gather before casting
    out = near[0] * grid.weight[0, :, None]
    for k in range(1, 4):
        out += near[k] * grid.weight[k, :, None]
    return out.reshape(height, width, -1).astype(np.float32, copy=False)


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
        if geometry.aerial_polar and not preprocess.polar:
            raise BenchmarkError(
                "The dataset was asked for SAFA's prepared polar aerials "
                "(dataset_options.polarmap=true) but this model takes non-polar aerial images. "
                "Drop the option, or set model.polar=true if the model supports it."
            )
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
        """Polar-transform from the full-size tile (or resize a prepared polar image), normalise."""
        if self.geometry.aerial_polar:
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
            x = resize(x, self.pre.aerial_size)
        elif self.pre.polar:
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
            "normalisation": self.pre.normalisation(),
            "resize": RESIZE,
            "polar_sampling": "prepared polarmap/ images, resized"
            if self.geometry.aerial_polar
            else "bilinear from the full-size tile (SAFA formula)",
        }


def shift_panorama(image: np.ndarray, columns: int) -> np.ndarray:
    """Circularly shift an HxWxC panorama right by COLUMNS (a rotation in azimuth)."""
    return np.roll(image, columns, axis=1)


def crop_field_of_view(image: np.ndarray, degrees: float, start: int) -> np.ndarray:
    """The columns of an HxWxC panorama covering DEGREES of azimuth from column START (wraps)."""
    width = image.shape[1]
    columns = max(1, round(width * degrees / 360.0))
    return image[:, (start + np.arange(columns)) % width]


@dataclass(frozen=True)
class GroundProtocol:
    """An evaluation protocol applied to test ground panoramas at their native size.

    ``aligned`` leaves them as they are; ``unknown-orientation`` rotates each by a random
    azimuth; ``fov=N`` keeps N degrees from a random azimuth, placed at column 0 with the
    remaining columns filled with FILL (the model's mean colour), so pixel scale and input
    size are those the model was trained at. Azimuths are a pure function of (seed, index).
    """

    name: str = "aligned"
    seed: int = 0
    fill: tuple[int, int, int] = (0, 0, 0)

    @property
    def fov(self) -> float | None:
        """Field of view in degrees, or None when the whole panorama is kept."""
        return float(self.name[4:]) if self.name.startswith("fov=") else None

    def azimuth(self, index: int) -> float:
        """The random azimuth (degrees in [0, 360)) of ground image INDEX."""
        return float(np.random.default_rng([self.seed, index]).random() * 360.0)

    def apply(self, image: np.ndarray, index: int) -> np.ndarray:
        """Ground image INDEX as this protocol presents it to the model."""
        if self.name == "aligned":
            return image
        width = image.shape[1]
        start = round(self.azimuth(index) / 360.0 * width) % width
        if self.fov is None:
            return shift_panorama(image, -start)
        crop = crop_field_of_view(image, self.fov, start)
        out = np.empty_like(image)
        out[:] = np.asarray(self.fill, dtype=image.dtype)
        out[:, : crop.shape[1]] = crop
        return out

    def on(self, split: CrossViewSplit) -> CrossViewSplit:
        """SPLIT with its ground images seen through this protocol (labels unchanged)."""
        if self.name == "aligned":
            return split
        load = split.load_ground
        return replace(split, load_ground=lambda i: self.apply(load(i), i))

    def describe(self) -> dict[str, object]:
        """The protocol as recorded in the result file."""
        out: dict[str, object] = {"name": self.name}
        if self.name != "aligned":
            out["seed"] = self.seed
            out["azimuth"] = "uniform in [0, 360) from numpy default_rng([seed, index])"
        if self.fov is not None:
            out["fov_degrees"] = self.fov
            out["layout"] = "crop at column 0, other columns filled with the normalisation mean"
        return out
