"""Image transforms of the data path as batched tensor ops, the same code on CPU and GPU.

Workers hand over uint8 images, (B, H, W, 3) or a list of (H, W, 3) when sizes differ; on the
model's device the evaluation protocol shifts or crops the panoramas, the kept rows are cut,
images are resized or polar-transformed, then normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.base import SourceGeometry
from benchmark.errors import BenchmarkError
from benchmark.specs import Preprocess

RESIZE = "torch.nn.functional.interpolate(bilinear, antialias=True, align_corners=False)"
Images = torch.Tensor | list[torch.Tensor]  # uint8 (B, H, W, 3), or B (H, W, 3) of mixed sizes


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


@lru_cache(maxsize=32)
def polar_grid_on(
    size: int, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """polar_grid's indices and weights as tensors on DEVICE (copied there once)."""
    grid = polar_grid(size, height, width)
    return torch.from_numpy(grid.index).to(device), torch.from_numpy(grid.weight).to(device)


def polar_batch(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """SAFA's polar transform of uint8 (B, S, S, C) tiles: float32 (B, C, height, width).

    A gather of the four neighbours before any cast, then one bilinear sum in a fixed order
    (no fused multiply-add), so CPU and GPU agree to float32 rounding.
    """
    b, size, side, c = images.shape
    if side != size:
        raise ValueError(f"polar transform needs a square aerial image, got {size}x{side}")
    index, weight = polar_grid_on(size, height, width, images.device)
    flat = images.reshape(b, size * size, c)
    out = flat[:, index[0]].float() * weight[0, :, None]
    for k in range(1, 4):
        out = out + flat[:, index[k]].float() * weight[k, :, None]
    return out.reshape(b, height, width, c).permute(0, 3, 1, 2)


def polar_transform(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Polar-transform one square HxWxC aerial image to (height, width, C) float32."""
    out = polar_batch(torch.tensor(image)[None], height, width)
    return out[0].permute(1, 2, 0).numpy()


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize float (B, C, H, W) or (C, H, W) images to SIZE with the one stated method."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if images.dim() == 3:
        return resize(images[None], size)[0]
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host TENSOR on DEVICE without stalling the host: on CUDA through pinned memory,
    so the copy queues behind the device's work instead of waiting for it."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def as_batch(images: Images) -> list[torch.Tensor]:
    """IMAGES as same-size uint8 (B, H, W, 3) groups: one tensor, or one per mixed-size image."""
    return [images] if isinstance(images, torch.Tensor) else [im[None] for im in images]


class InputPipeline:
    """Turns a dataset's uint8 images into a model's normalised input tensors, batched.

    ``shape`` does everything before normalisation (rows, resize, polar) and is what the
    model-input cache stores, rounded to uint8; ``normalise`` finishes on the device.
    """

    def __init__(self, preprocess: Preprocess, geometry: SourceGeometry) -> None:
        if geometry.aerial_polar and not preprocess.polar:
            raise BenchmarkError(
                "The dataset was asked for SAFA's prepared polar aerials "
                "(dataset_options.polarmap=true) but this model takes non-polar aerial images. "
                "Drop the option, or set model.polar=true if the model supports it."
            )
        self.pre = preprocess
        self.geometry = geometry
        mean = torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._stats = {torch.device("cpu"): (mean, std)}  # per device, copied once

    def __getstate__(self) -> dict:
        cpu = torch.device("cpu")
        return {**self.__dict__, "_stats": {cpu: self._stats[cpu]}}  # workers get no GPU copies

    def size(self, view: str) -> tuple[int, int]:
        """(height, width) of VIEW's model input."""
        return tuple(self.pre.ground_size if view == "ground" else self.pre.aerial_size)

    def source_size(self, view: str) -> tuple[int, int] | None:
        """The smallest decoded (height, width) after which the antialiased resize gives
        (nearly) what it gives from the full image; a JPEG may be decoded at any DCT scale
        that keeps at least this size. None for tiles the polar transform samples: it point-
        samples without antialiasing, so any prefilter (a DCT scaling) would change it."""
        h, w = self.size(view)
        if view == "ground":
            a, b = self.geometry.ground_rows
            return math.ceil(h / (b - a)), w
        if self._polar(view):
            return None
        return h, w

    def _polar(self, view: str) -> bool:
        return view == "aerial" and self.pre.polar and not self.geometry.aerial_polar

    def check(self, view: str, shape: Sequence[int]) -> None:
        """Raise ValueError if an image of SHAPE (H, W, ...) cannot become VIEW's input."""
        if self._polar(view) and shape[0] != shape[1]:
            raise ValueError(f"polar transform needs a square aerial image, got {shape[:2]}")

    def shaping(self, view: str) -> dict[str, object]:
        """What VIEW's steps before normalisation do (the model-input cache's key)."""
        out: dict[str, object] = {"size": list(self.size(view)), "resize": RESIZE}
        if view == "ground":
            out["rows"] = list(self.geometry.ground_rows)
        elif self._polar(view):
            out["polar"] = "SAFA formula, bilinear gather of 4 neighbours, float32"
        elif self.geometry.aerial_polar:
            out["polar"] = "prepared polarmap/ images"
        return out

    def shape(self, view: str, images: Images) -> torch.Tensor:
        """Float (B, 3, h, w) in [0, 255]: rows kept, resized or polar-transformed."""
        return torch.cat([self._shape_group(view, x) for x in as_batch(images)])

    def _shape_group(self, view: str, x: torch.Tensor) -> torch.Tensor:
        if self._polar(view):
            return polar_batch(x, *self.pre.aerial_size)
        x = x.permute(0, 3, 1, 2).float()
        if view == "ground":
            h = x.shape[2]
            a, b = self.geometry.ground_rows
            x = x[:, :, int(round(a * h)) : int(round(b * h))]
        return resize(x, self.size(view))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values (B, 3, h, w) in [0, 255] to the model's normalised input."""
        if x.device not in self._stats:
            cpu = self._stats[torch.device("cpu")]
            self._stats[x.device] = tuple(on_device(t, x.device) for t in cpu)
        mean, std = self._stats[x.device]
        x = (x / 255.0 - mean) / std
        return x.flip(1) if self.pre.bgr else x

    def model_input(self, view: str, images: Images, cached: bool = False) -> torch.Tensor:
        """VIEW's normalised model input from uint8 IMAGES: source pixels, or CACHED ones
        already shaped (the model-input cache). Contiguous NCHW (the steps before work on
        channels-last views, and a model's kernels, hence its rounding, follow the layout)."""
        if cached:
            x = torch.cat([g.permute(0, 3, 1, 2).float() for g in as_batch(images)])
        else:
            x = self.shape(view, images)
        return self.normalise(x).contiguous()

    def ground(self, image: np.ndarray) -> torch.Tensor:
        """One HxWx3 uint8 panorama as the model's (3, h, w) input."""
        return self.model_input("ground", torch.tensor(image)[None])[0]

    def aerial(self, image: np.ndarray) -> torch.Tensor:
        """One HxWx3 uint8 aerial image as the model's (3, h, w) input."""
        return self.model_input("aerial", torch.tensor(image)[None])[0]

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


@dataclass(frozen=True)
class GroundProtocol:
    """An evaluation protocol applied to test ground panoramas as the workers deliver them.

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

    def present(self, images: Images, indices: Sequence[int]) -> Images:
        """uint8 panoramas (of ground images INDICES) as this protocol shows them."""
        if self.name == "aligned":
            return images
        if isinstance(images, list):
            return [self._present(im[None], [i])[0] for im, i in zip(images, indices, strict=True)]
        return self._present(images, indices)

    def _present(self, images: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
        b, h, width, c = images.shape
        starts = [round(self.azimuth(int(i)) / 360.0 * width) % width for i in indices]
        keep = width if self.fov is None else max(1, round(width * self.fov / 360.0))
        cols = (torch.tensor(starts)[:, None] + torch.arange(keep)[None]) % width
        cols = on_device(cols, images.device)[:, None, :, None].expand(b, h, keep, c)
        seen = images.gather(2, cols)
        if keep == width:
            return seen
        out = torch.empty_like(images)
        out[:, :, :keep] = seen
        for channel, value in enumerate(self.fill):
            out[:, :, keep:, channel] = value
        return out

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
