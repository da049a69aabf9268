"""How each view's images travel from the DataLoader workers to the model's device.

A worker ``fetch``es uint8 images for a list of indices: pixels decoded by PIL (a JPEG that
is resized to a model input at least 2x smaller is decoded at a reduced DCT scale, see
``InputPipeline.source_size``), rows of the model-input cache, or JPEG bytes to decode on the
device. ``to_model`` then turns
a batch into normalised model inputs on the device with the pipeline's batched ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from benchmark.data.base import CrossViewSplit
from benchmark.data.images import DECODE, ImageReader, MemmapImages, decode_jpeg_bytes, stacked
from benchmark.data.input_cache import model_input_cache
from benchmark.data.transforms import GroundProtocol, Images, InputPipeline
from benchmark.errors import BenchmarkError

Stage = Literal["pixels", "model-input", "jpeg"]


def to_device(images: Images, device: torch.device) -> Images:
    """IMAGES on DEVICE (asynchronously from pinned memory)."""
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    return [im.to(device, non_blocking=True) for im in images]


def decode_on(device: torch.device, files: list[torch.Tensor], view: str) -> Images:
    """JPEG FILES (uint8 byte tensors) decoded to RGB on DEVICE, as (B, H, W, 3) or a list."""
    try:
        images = decode_jpeg_bytes(files, device)
    except RuntimeError as exc:
        raise BenchmarkError(
            f"A {view} image of this batch could not be decoded on {device} ({exc}); "
            "dataset_options.decode=device reads JPEG files only. Use decode=reduced, or run "
            "`python -m benchmark datasets check` to find a damaged file."
        ) from None
    hwc = [im.permute(1, 2, 0) for im in images]
    return torch.stack(hwc) if len({im.shape for im in hwc}) == 1 else hwc


@dataclass
class ViewSource:
    """Where one view's images come from, what a worker hands over (STAGE), and the RECORD
    of how they were decoded and cached, for the result file."""

    view: str
    read: Callable[[int], Any]
    stage: Stage
    paths: list[str] | None = None
    record: dict[str, object] = field(default_factory=lambda: {"decode": "in memory"})

    def fetch(self, indices: Sequence[int], pipeline: InputPipeline) -> Images:
        """The worker's part: uint8 images INDICES (pixels, cached model inputs, or bytes)."""
        if isinstance(self.read, MemmapImages):
            return self.read.rows(indices)
        if self.stage == "jpeg":
            return [self.read(int(i)) for i in indices]
        images = []
        for i in indices:
            image = self.read(int(i))
            try:
                pipeline.check(self.view, image.shape)
            except ValueError as exc:
                name = self.paths[int(i)] if self.paths else f"{self.view} image {i}"
                raise BenchmarkError(
                    f"{name} ({image.shape[1]}x{image.shape[0]} pixels) cannot be used: {exc}. "
                    "Replace it with an image as the dataset distributes it."
                ) from None
            images.append(image)
        return stacked(images)

    def to_model(
        self,
        images: Images,
        pipeline: InputPipeline,
        device: torch.device,
        protocol: GroundProtocol | None = None,
        indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The device's part: normalised model inputs from a fetched batch, with PROTOCOL
        (of ground images INDICES) applied to the pixels as they arrive."""
        if self.stage == "jpeg":
            images = decode_on(device, images, self.view)
        else:
            images = to_device(images, device)
        if protocol is not None:
            images = protocol.present(images, indices)
        return pipeline.model_input(self.view, images, cached=self.stage == "model-input")


def view_source(split: CrossViewSplit, view: str, pipeline: InputPipeline) -> ViewSource:
    """The source of SPLIT's VIEW images for PIPELINE, building the model-input cache if the
    dataset options ask for one."""
    load = split.load_ground if view == "ground" else split.load_aerial
    if isinstance(load, MemmapImages):
        return ViewSource(view, load, "pixels", record={"decode": "decoded-image cache"})
    if not isinstance(load, ImageReader):
        return ViewSource(view, load, "pixels")
    options, paths = load.options, load.paths
    if options.decode == "device":
        return ViewSource(view, load.raw, "jpeg", paths, {"decode": DECODE["device"]})
    least = pipeline.source_size(view) if options.decode == "reduced" else None
    record: dict[str, object] = {"decode": DECODE["reduced" if least else "full"]}
    if least:
        record["decoded_at_least"] = list(least)
    if options.cache == "model-input":
        cache = model_input_cache(load, view, pipeline)
        record["cache"] = "model-input: uint8 after the steps of 'shaping', rounded"
        record["shaping"] = pipeline.shaping(view)
        if view == "ground":  # without the cache, protocols shift the decoded panorama
            record["protocol_applied_to"] = "cached model inputs (model resolution)"
        return ViewSource(view, cache, "model-input", paths, record)
    return ViewSource(view, load.at_least(least), "pixels", paths, record)


def describe_sources(split: CrossViewSplit, pipeline: InputPipeline) -> dict[str, object]:
    """How both views of SPLIT reach the model under PIPELINE (decode, cache)."""
    return {v: view_source(split, v, pipeline).record for v in ("ground", "aerial")}
