"""The model-input cache: a dataset's images as a model sees them, before normalisation.

``dataset_options.cache=model-input`` keeps each view's images after the kept rows, the
resize and the polar transform, rounded to uint8, in one memory-mapped .npy file per view.
It is built once (decoding in parallel) and found again by a key of everything its content
depends on: the files (path, size, modification time), the decode, the shaping steps and
the model's input size. Normalisation, evaluation protocols and augmentation run after it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from benchmark.data.images import (
    CACHE_VERSION,
    ImageReader,
    MemmapImages,
    build_memmap,
    decoded_in_parallel,
    stacked,
)
from benchmark.data.transforms import InputPipeline
from benchmark.errors import BenchmarkError


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def cache_path(reader: ImageReader, view: str, pipeline: InputPipeline) -> Path:
    """Where the model-input cache of READER's images for VIEW under PIPELINE lives."""
    key = {
        "files": [[p, *_stat(p)] for p in reader.paths],
        "view": view,
        "shaping": pipeline.shaping(view),
        "decode": reader.options.decode,
        "decoded_at_least": reader.at_least(pipeline.source_size(view)).least,
        "skip_bad_images": reader.options.skip_bad_images,
        "v": CACHE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    h, w = pipeline.size(view)
    name = f"{reader.label or reader.kind}-{view}-{h}x{w}-{digest}.npy"
    return reader.options.cache_folder() / name


def shaped(reader: ImageReader, view: str, pipeline: InputPipeline, part: range) -> np.ndarray:
    """Images PART of READER as uint8 (n, h, w, 3) model inputs before normalisation."""
    images = decoded_in_parallel(reader, part)
    for i, image in zip(part, images, strict=True):
        try:
            pipeline.check(view, image.shape)
        except ValueError as exc:
            raise BenchmarkError(
                f"{reader.paths[i]} cannot be used: {exc}. Replace it with an image as the "
                "dataset distributes it."
            ) from None
    with torch.inference_mode():
        x = pipeline.shape(view, stacked(images))
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def model_input_cache(reader: ImageReader, view: str, pipeline: InputPipeline) -> MemmapImages:
    """The model-input cache of READER's images for VIEW, built (once, under a file lock that
    other processes wait on) if absent."""
    path = cache_path(reader, view, pipeline)
    source = reader.at_least(pipeline.source_size(view))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return build_memmap(
                path,
                len(reader),
                (*pipeline.size(view), 3),
                lambda part: shaped(source, view, pipeline, part),
                f"caching {reader.label} {view} model inputs",
            )
    except OSError as exc:
        raise BenchmarkError(
            f"Could not write the model-input cache {path} ({exc.strerror or exc}). Set "
            "dataset_options.cache_dir to a writable folder with free space."
        ) from None
