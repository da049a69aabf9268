"""Reading dataset images: uint8 RGB decode (PIL at reduced size when asked; libjpeg-turbo
straight into an array for JPEGs at full size), bad-file handling, memmap caches and batch
buffers."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import get_worker_info
from tqdm import tqdm

from benchmark import distributed
from benchmark.data.files import open_regular
from benchmark.data.transforms import RESIZE, resize
from benchmark.errors import BenchmarkError
from benchmark.io import cache_root

CACHE_VERSION = 1
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # modes convert("RGB") would clip
JPEG_MAGIC = b"\xff\xd8\xff"
# Files this process read as black images under skip_bad_images (a run reports the count;
# DataLoader worker processes keep their own copy).
SKIPPED: set[str] = set()
DECODE = {
    "reduced": "PIL/libjpeg DCT scaling to the smallest of 1/1, 1/2, 1/4, 1/8 of the file "
    "that is at least decoded_at_least (JPEG only), then the stated resize",
    "full": "full size: JPEG by libjpeg-turbo through torchvision.io.decode_jpeg (the same "
    "pixels as PIL), other formats by PIL",
    "device": "torchvision.io.decode_jpeg on the model's device (nvJPEG on CUDA), full size",
}


class LoadOptions(BaseModel):
    """How a real dataset's images are read (``--set dataset_options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    skip_bad_images: bool = Field(
        False, description="replace an unreadable image by a black one (with a warning)"
    )
    decode: Literal["reduced", "full", "device"] = Field(
        "reduced",
        description="reduced: JPEGs that are resized to the model input are decoded at the "
        "smallest DCT scale (1/2, 1/4, 1/8) that still covers it (tiles for the polar "
        "transform at full size); full: full-size decode; device: JPEG bytes decoded on the "
        "model's device (nvJPEG on CUDA)",
    )
    cache: Literal["none", "decoded", "model-input"] = Field(
        "none",
        description="decoded: a uint8 memmap of decoded images (native size or cache_*_size); "
        "model-input: a uint8 memmap of the images as the model sees them (rows kept, resized, "
        "polar), built once per preprocessing; 'decoded' when only cache_dir is given",
    )
    cache_dir: str | None = Field(
        None, description="folder of the cache (default: $CVGL_BENCHMARK_CACHE/<cache>)"
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

    @model_validator(mode="after")
    def _consistent(self) -> LoadOptions:
        if self.cache == "none" and self.cache_dir is not None:
            self.cache = "decoded"  # a folder alone asks for the decoded-image cache
        if self.decode == "device" and (self.cache != "none" or self.skip_bad_images):
            raise ValueError(
                "decode=device sends JPEG bytes to the device for every batch; it cannot be "
                "combined with a cache or skip_bad_images. Choose one"
            )
        return self

    def cache_folder(self) -> Path:
        """Where this cache is kept."""
        folder = self.cache_dir or cache_root() / self.cache
        return Path(folder).expanduser()


def _open_error(path: str | Path, what: str) -> BenchmarkError:
    return BenchmarkError(
        f"Image {path} {what}. Restore it from the original download, or set "
        "dataset_options.skip_bad_images=true to use a black image in its place."
    )


def read_image(path: str | Path, least: tuple[int, int] | None = None) -> np.ndarray:
    """Decode PATH into a writable uint8 HxWx3 RGB array (see decode_image)."""
    return decode_image(path, least).copy()


def decode_jpeg_bytes(
    files: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu"
) -> torch.Tensor | list[torch.Tensor]:
    """JPEG FILES (uint8 byte tensors) decoded to RGB (3, H, W) on DEVICE by
    torchvision.io.decode_jpeg (libjpeg-turbo on the CPU, nvJPEG on CUDA); RuntimeError for
    data it cannot decode."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # torchvision 0.29 points to torchcodec; still works
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(files, mode=ImageReadMode.RGB, device=device)


def _contents(fh: BinaryIO) -> bytearray:
    """The bytes of the open file FH, read once into a buffer of its size (those it gave,
    should it have shrunk since)."""
    data = bytearray(os.fstat(fh.fileno()).st_size)
    del data[fh.readinto(data) or 0 :]
    return data


def _whole_jpeg(data: bytearray) -> np.ndarray | None:
    """DATA, a JPEG file, decoded at full size straight into a read-only HxWx3 array (one
    decode, no repack: PIL would decode into 4 bytes a pixel and repack); None when it
    cannot (the PIL path then decodes it or names what is wrong)."""
    try:
        chw = decode_jpeg_bytes(torch.frombuffer(data, dtype=torch.uint8))
    except RuntimeError:
        return None
    image = chw.permute(1, 2, 0).numpy()  # the decoder writes HxWx3; this is a view of it
    image.flags.writeable = False
    return image


def decode_image(path: str | Path, least: tuple[int, int] | None = None) -> np.ndarray:
    """Decode PATH into a read-only uint8 HxWx3 RGB array; BenchmarkError names a bad file.

    With LEAST (height, width), a JPEG is decoded by PIL at the smallest DCT scale (1/2, 1/4,
    1/8) that still gives at least that size; other formats decode at full size. Without it,
    a JPEG is decoded by libjpeg-turbo into the array directly, other formats by PIL.
    """
    try:
        with open_regular(path) as fh:
            source: BinaryIO = fh
            if least is None:
                data = _contents(fh)
                if data[:3] == JPEG_MAGIC and (image := _whole_jpeg(data)) is not None:
                    return image
                source = io.BytesIO(data)
            with Image.open(source) as im:
                if least is not None:
                    im.draft(None, (least[1], least[0]))
                im.load()
                if im.mode in WIDE_MODES:
                    raise BenchmarkError(
                        f"Image {path} has {im.mode} pixels (more than 8 bits per channel); "
                        "the harness reads 8-bit images. Convert it to 8-bit RGB, or set "
                        "dataset_options.skip_bad_images=true to use a black image in its "
                        "place."
                    )
                rgb = im if im.mode == "RGB" else im.convert("RGB")
                return np.asarray(rgb, dtype=np.uint8)
    except FileNotFoundError:
        raise _open_error(path, "does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _open_error(
            path, f"could not be decoded ({exc}); the file is damaged or not an image"
        ) from None


def read_bytes(path: str | Path) -> torch.Tensor:
    """The bytes of file PATH as a uint8 tensor (decoded later, on the device)."""
    try:
        with open_regular(path) as fh:
            return torch.frombuffer(_contents(fh), dtype=torch.uint8)
    except FileNotFoundError:
        raise _open_error(path, "does not exist") from None
    except OSError as exc:
        raise _open_error(path, f"could not be read ({exc.strerror})") from None


def image_size(path: str | Path, least: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """(height, width) PATH decodes to (see read_image's LEAST), from its header; None if
    unreadable."""
    try:
        with open_regular(path) as fh, Image.open(fh) as im:
            if least is not None:
                im.draft(None, (least[1], least[0]))
            return im.size[1], im.size[0]
    except (OSError, SyntaxError, ValueError, BenchmarkError):
        return None


class ImageReader:
    """Decodes the image at an index of a path list; optionally blanks unreadable files.

    OPTIONS also say how (``decode``) and whether the images are cached at model input
    (``cache``); ``at_least`` gives the reader a reduced-size decode, ``take`` a subset.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        kind: str,
        options: LoadOptions | None = None,
        label: str = "",
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.kind = kind
        self.options = options or LoadOptions()
        self.label = label
        self.least: tuple[int, int] | None = None
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def at_least(self, size: tuple[int, int] | None) -> ImageReader:
        """This reader decoding JPEGs at reduced size, at least SIZE (when decode=reduced; a
        SIZE of None keeps the full size)."""
        if self.options.decode != "reduced" or size is None:
            return self
        out = self._copy(self.paths)
        out.least = tuple(size)
        return out

    def take(self, keep: Sequence[int]) -> ImageReader:
        """The reader of the images KEEP (in that order)."""
        return self._copy([self.paths[int(k)] for k in keep])

    def _copy(self, paths: list[str]) -> ImageReader:
        out = ImageReader(paths, self.kind, self.options, self.label)
        out.least = self.least
        return out

    def __call__(self, i: int) -> np.ndarray:
        """The decoded image I (uint8 HxWx3, read-only)."""
        try:
            image = decode_image(self.paths[i], self.least)
        except BenchmarkError as exc:
            if not self.options.skip_bad_images:
                raise
            SKIPPED.add(self.paths[i])
            warnings.warn(f"{exc} Using a black {self.kind} image instead.", stacklevel=2)
            return np.zeros(self._fallback_shape(i), dtype=np.uint8)
        self._shape = image.shape
        return image

    def raw(self, i: int) -> torch.Tensor:
        """The undecoded bytes of file I (decoded later, on the device)."""
        return read_bytes(self.paths[i])

    def _fallback_shape(self, bad: int) -> tuple[int, ...]:
        if self._shape is None:
            for path in self.paths[bad + 1 : bad + 50] + self.paths[max(0, bad - 50) : bad]:
                size = image_size(path, self.least)
                if size is not None:
                    self._shape = (*size, 3)
                    break
            else:
                raise BenchmarkError(
                    f"No readable {self.kind} image near {self.paths[bad]}; check the folder."
                )
        return self._shape


def stacked(images: Sequence[np.ndarray]) -> torch.Tensor | list[torch.Tensor]:
    """Same-size uint8 images copied into one (B, H, W, 3) tensor (in shared memory inside a
    worker); images of mixed sizes as a list of (H, W, 3) copies."""
    if len({im.shape for im in images}) != 1:
        return [torch.tensor(im) for im in images]
    out = batch_buffer((len(images), *images[0].shape))
    rows = out.numpy()
    for k, im in enumerate(images):
        rows[k] = im
    return out


def batch_buffer(shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised uint8 tensor of SHAPE; in a DataLoader worker it is allocated in shared
    memory, so handing it to the main process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(tuple(shape))


class MemmapImages:
    """Images of one kind read from a uint8 (n, h, w, 3) .npy memmap built once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None
        self.shape = tuple(np.load(self.path, mmap_mode="r").shape)

    def __len__(self) -> int:
        return self.shape[0]

    def _open(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __call__(self, i: int) -> np.ndarray:
        """A writable copy of image I."""
        return np.array(self._open()[i])

    def rows(self, indices: Sequence[int]) -> torch.Tensor:
        """Images INDICES as one uint8 (B, h, w, 3) tensor: a single copy out of the file."""
        out = batch_buffer((len(indices), *self.shape[1:]))
        rows, array = out.numpy(), self._open()
        for k, i in enumerate(indices):  # one memcpy per image (np.take is slower here)
            rows[k] = array[int(i)]
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}  # workers reopen the file, never copy it


def build_memmap(
    path: Path,
    count: int,
    shape: tuple[int, ...],
    chunk: Callable[[range], np.ndarray],
    desc: str,
    step: int = 256,
) -> MemmapImages:
    """The .npy memmap at PATH of COUNT uint8 images of SHAPE, made if absent by writing
    CHUNK(indices) for consecutive index ranges; published atomically, with a progress bar
    on a terminal (rank 0 under torchrun)."""
    if path.is_file():
        return MemmapImages(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    full = (count, *shape)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=full)
    shown = distributed.current().is_main and os.isatty(2)
    gib = math.prod(full) / 2**30
    bar = tqdm(total=count, desc=f"{desc} ({gib:.1f} GiB)", unit="img", disable=not shown)
    try:
        for start in range(0, count, step):
            part = range(start, min(count, start + step))
            out[part.start : part.stop] = chunk(part)
            bar.update(len(part))
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return MemmapImages(path)


def decoded_in_parallel(read: Callable[[int], np.ndarray], indices: range) -> list[np.ndarray]:
    """READ of every index, decoded by one thread per core (PIL releases the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(read, indices))


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """IMAGE resized to SIZE with the harness's one resize method, back to uint8."""
    if image.shape[:2] == tuple(size):
        return image
    x = torch.tensor(image).permute(2, 0, 1).float()
    out = resize(x, size).round().clamp(0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).numpy()


def cached_images(
    reader: ImageReader, size: tuple[int, int] | None, cache_dir: Path, label: str
) -> MemmapImages:
    """A memmap of READER's images (decoded) at SIZE under CACHE_DIR, built if absent."""
    if size is None:
        size = reader(0).shape[:2]
    key = json.dumps(
        {"paths": reader.paths, "size": list(size), "resize": RESIZE, "v": CACHE_VERSION}
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{label}-{size[0]}x{size[1]}-{digest}.npy"

    def chunk(part: range) -> np.ndarray:
        return np.stack(decoded_in_parallel(lambda i: _fit(reader(i), size), part))

    return build_memmap(path, len(reader), (*size, 3), chunk, f"caching {label}")


def image_loader(
    paths: Sequence[str | Path], kind: str, options: LoadOptions, label: str
) -> Callable[[int], np.ndarray]:
    """The loader a CrossViewSplit uses for PATHS: a reader (which the data path may decode at
    reduced size or cache at model input), or the decoded-image memmap cache."""
    reader = ImageReader(paths, kind, options, label)
    if options.cache != "decoded":
        return reader
    if kind == "aerial":
        side = options.cache_aerial_size
        size = None if side is None else (side, side)
    else:
        size = options.cache_ground_size
    return cached_images(reader, size, options.cache_folder(), f"{label}-{kind}")
