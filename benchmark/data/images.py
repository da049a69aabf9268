"""Reading dataset images: PIL decode to uint8 RGB, bad-file handling, a memmap cache."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from benchmark import distributed
from benchmark.data.files import open_regular
from benchmark.data.transforms import RESIZE, resize
from benchmark.errors import BenchmarkError

CACHE_VERSION = 1
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # modes convert("RGB") would clip
# Files this process read as black images under skip_bad_images (a run reports the count;
# DataLoader worker processes keep their own copy).
SKIPPED: set[str] = set()


class LoadOptions(BaseModel):
    """How a real dataset's images are read (``--set dataset_options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    skip_bad_images: bool = Field(
        False, description="replace an unreadable image by a black one (with a warning)"
    )
    cache_dir: str | None = Field(
        None, description="folder for a uint8 memmap of decoded images (built once)"
    )
    cache_ground_size: tuple[int, int] | None = Field(
        None, description="(height, width) of cached panoramas; default: the first image's"
    )
    cache_aerial_size: int | None = Field(
        None, ge=8, description="side of cached aerial tiles; default: the first image's"
    )
    polarmap: bool = Field(
        False, description="read SAFA's prepared polar aerials from polarmap/ (polar models)"
    )


def read_image(path: str | Path) -> np.ndarray:
    """Decode PATH with PIL into a uint8 HxWx3 RGB array; BenchmarkError names a bad file."""
    try:
        with open_regular(path) as fh, Image.open(fh) as im:
            im.load()
            if im.mode in WIDE_MODES:
                raise BenchmarkError(
                    f"Image {path} has {im.mode} pixels (more than 8 bits per channel); the "
                    "harness reads 8-bit images. Convert it to 8-bit RGB, or set "
                    "dataset_options.skip_bad_images=true to use a black image in its place."
                )
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.array(rgb, dtype=np.uint8)  # writable, as torch.from_numpy wants
    except FileNotFoundError:
        raise BenchmarkError(
            f"Image {path} does not exist. Restore it from the original download, or set "
            "dataset_options.skip_bad_images=true to use a black image in its place."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BenchmarkError(
            f"Image {path} could not be decoded ({exc}); the file is damaged or not an "
            "image. Restore it from the original download, or set "
            "dataset_options.skip_bad_images=true to use a black image in its place."
        ) from None


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) from the file header without decoding, or None if unreadable."""
    try:
        with open_regular(path) as fh, Image.open(fh) as im:
            return im.size[1], im.size[0]
    except (OSError, SyntaxError, ValueError, BenchmarkError):
        return None


class ImageReader:
    """Decodes the image at an index of a path list; optionally blanks unreadable files."""

    def __init__(self, paths: Sequence[str | Path], kind: str, skip_bad: bool = False) -> None:
        self.paths = [str(p) for p in paths]
        self.kind = kind
        self.skip_bad = skip_bad
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __call__(self, i: int) -> np.ndarray:
        """The decoded image I (uint8 HxWx3)."""
        try:
            image = read_image(self.paths[i])
        except BenchmarkError as exc:
            if not self.skip_bad:
                raise
            SKIPPED.add(self.paths[i])
            warnings.warn(f"{exc} Using a black {self.kind} image instead.", stacklevel=2)
            return np.zeros(self._fallback_shape(i), dtype=np.uint8)
        self._shape = image.shape
        return image

    def _fallback_shape(self, bad: int) -> tuple[int, ...]:
        if self._shape is None:
            for path in self.paths[bad + 1 : bad + 50] + self.paths[max(0, bad - 50) : bad]:
                size = image_size(path)
                if size is not None:
                    self._shape = (*size, 3)
                    break
            else:
                raise BenchmarkError(
                    f"No readable {self.kind} image near {self.paths[bad]}; check the folder."
                )
        return self._shape


class MemmapImages:
    """Images of one kind, decoded and resized once, read from a uint8 (n, h, w, 3) .npy memmap."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None
        self.shape = tuple(np.load(self.path, mmap_mode="r").shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __call__(self, i: int) -> np.ndarray:
        """A writable copy of image I."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return np.array(self._array[i])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}  # workers reopen the file, never copy it


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """IMAGE resized to SIZE with the harness's one resize method, back to uint8."""
    if image.shape[:2] == tuple(size):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    out = resize(x, size).round().clamp(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).numpy()


def cached_images(
    reader: ImageReader, size: tuple[int, int] | None, cache_dir: Path, label: str
) -> MemmapImages:
    """A memmap of READER's images at SIZE under CACHE_DIR, built (with progress) if absent."""
    if size is None:
        size = reader(0).shape[:2]
    key = json.dumps(
        {"paths": reader.paths, "size": list(size), "resize": RESIZE, "v": CACHE_VERSION}
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{label}-{size[0]}x{size[1]}-{digest}.npy"
    if path.is_file():
        return MemmapImages(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shape = (len(reader), *size, 3)
    gib = np.prod(shape) / 2**30
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            images = pool.map(lambda i: _fit(reader(i), size), range(len(reader)))
            bar = distributed.progress(
                images, total=len(reader), desc=f"caching {label} ({gib:.1f} GiB)", unit="img"
            )
            for i, image in enumerate(bar):
                out[i] = image
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return MemmapImages(path)


def image_loader(
    paths: Sequence[str | Path], kind: str, options: LoadOptions, label: str
) -> Callable[[int], np.ndarray]:
    """The loader a CrossViewSplit uses for PATHS: direct decode, or the memmap cache."""
    reader = ImageReader(paths, kind, options.skip_bad_images)
    if options.cache_dir is None:
        return reader
    if kind == "aerial":
        side = options.cache_aerial_size
        size = None if side is None else (side, side)
    else:
        size = options.cache_ground_size
    return cached_images(reader, size, Path(options.cache_dir).expanduser(), f"{label}-{kind}")
