"""The default dataset: a generated cross-view world (CVUSA-like, ground at tile centres).

Generated deterministically from a seed in seconds and cached on disk; no download.
Train and test points come from disjoint strips of the map, separated by a full tile.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchmark import distributed
from benchmark.data.base import CrossViewSplit, DatasetBundle
from benchmark.data.world import World, WorldParams, params_dict
from benchmark.io import atomic_write, cache_root


class SyntheticOptions(BaseModel):
    """Size and appearance of the generated world (``--set dataset_options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    n_train: int = Field(2000, ge=1)
    n_test: int = Field(500, ge=1)
    ground_px: tuple[int, int] = (64, 256)
    aerial_px: int = Field(128, ge=8)
    tile_metres: float = Field(64.0, gt=0)
    min_spacing: float = Field(6.0, ge=0, description="minimum metres between two points")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of the map used for test")
    map_px: int = Field(1536, ge=256)


def cache_dir() -> Path:
    """Where generated worlds are cached ($CVGL_BENCHMARK_CACHE or ~/.cache/cvgl-benchmark)."""
    return cache_root() / "synthetic"


def sample_points(
    rng: np.random.Generator,
    world: World,
    n: int,
    box: tuple[float, float, float, float],
    spacing: float,
) -> np.ndarray:
    """N open-ground points (metres, row/col) inside BOX, at least SPACING apart."""
    y0, y1, x0, x1 = box
    mpp = world.params.metres_per_px
    accepted: list[np.ndarray] = []
    pts = np.empty((0, 2))
    tries = 0
    while len(accepted) < n:
        tries += 1
        if tries > 200 * n:
            raise ValueError(
                f"could not place {n} points {spacing} m apart; lower n or min_spacing"
            )
        p = rng.uniform([y0, x0], [y1, x1])
        r, c = int(p[0] / mpp), int(p[1] / mpp)
        if world.height[r, c] > 0:
            continue
        if len(pts) and np.min(np.sum((pts - p) ** 2, axis=1)) < spacing**2:
            continue
        accepted.append(p)
        pts = np.asarray(accepted)
    return pts


def appearance(rng: np.random.Generator, images: np.ndarray, ground: bool) -> np.ndarray:
    """Lighting change, sensor noise and (ground only) transient objects; returns uint8."""
    out = images.astype(np.float32)
    n, h, w, _ = out.shape
    gain = (
        rng.uniform(0.6, 1.4, size=(n, 1, 1, 1))
        if ground
        else rng.uniform(0.85, 1.15, (n, 1, 1, 1))
    )
    tint = rng.uniform(0.85, 1.15, size=(n, 1, 1, 3)) if ground else 1.0
    out = out * gain * tint + rng.normal(0, 8 if ground else 4, size=out.shape)
    if ground:
        for i in range(n):  # cars and people: blocks the aerial view never shows
            for _ in range(rng.integers(2, 7)):
                bh, bw = rng.integers(h // 12, h // 4), rng.integers(w // 64, w // 16)
                r = rng.integers(h // 2, h - bh)
                c = rng.integers(0, w - bw)
                out[i, r : r + bh, c : c + bw] = rng.uniform(0, 255, size=3)
    return np.clip(out, 0, 255).astype(np.uint8)


def generate(opts: SyntheticOptions) -> dict[str, np.ndarray]:
    """Generate the world's train and test images and positions (deterministic in seed)."""
    params = WorldParams(seed=opts.seed, map_px=opts.map_px)
    rng = np.random.default_rng(opts.seed + 1)
    world = World(params)
    size = world.size_metres
    half = opts.tile_metres / 2
    split_x = size * opts.test_fraction
    boxes = {
        "test": (half, size - half, half, split_x),
        "train": (half, size - half, split_x + opts.tile_metres, size - half),
    }
    data: dict[str, np.ndarray] = {}
    for name, n in (("train", opts.n_train), ("test", opts.n_test)):
        pts = sample_points(rng, world, n, boxes[name], opts.min_spacing)
        ground, aerial = [], []
        for start in distributed.progress(
            range(0, n, 256), desc=f"synthetic {name}", leave=False, unit="chunk"
        ):
            chunk = pts[start : start + 256]
            ground.append(appearance(rng, world.panoramas(chunk, *opts.ground_px), ground=True))
            aerial.append(
                appearance(rng, world.aerial(chunk, opts.tile_metres, opts.aerial_px), ground=False)
            )
        data[f"{name}_ground"] = np.concatenate(ground)
        data[f"{name}_aerial"] = np.concatenate(aerial)
        data[f"{name}_xy"] = pts.astype(np.float32)
    return data


def load_or_generate(
    opts: SyntheticOptions,
    make: Callable[[SyntheticOptions], dict[str, np.ndarray]] = generate,
    kind: str = "world",
) -> dict[str, np.ndarray]:
    """MAKE(OPTS) from the on-disk cache (file name prefix KIND), made and cached if absent."""
    key = json.dumps(
        {
            "opts": opts.model_dump(),
            "world": params_dict(WorldParams(seed=opts.seed, map_px=opts.map_px)),
            "v": 1,
        },
        sort_keys=True,
    )
    path = cache_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache file is regenerated
    data = make(opts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **data)
    return data


def _split(
    name: str, ground: np.ndarray, aerial: np.ndarray, xy: np.ndarray, tile: float
) -> CrossViewSplit:
    return CrossViewSplit(
        name=name,
        load_ground=lambda i: ground[i],
        load_aerial=lambda j: aerial[j],
        num_ground=len(ground),
        num_aerial=len(aerial),
        positives=np.arange(len(ground)),
        ground_xy=xy,
        aerial_xy=xy,
        aerial_tile_metres=tile,
    )


def build_synthetic(root: Path | None, split: str, options: dict | None = None) -> DatasetBundle:
    """The synthetic CVUSA-like dataset (root is unused: it needs no download)."""
    opts = SyntheticOptions(**(options or {}))
    data = load_or_generate(opts)
    return DatasetBundle(
        name="synthetic",
        split=split,
        train=_split(
            "train", data["train_ground"], data["train_aerial"], data["train_xy"], opts.tile_metres
        ),
        test=_split(
            "test", data["test_ground"], data["test_aerial"], data["test_xy"], opts.tile_metres
        ),
        info={
            "options": opts.model_dump(),
            "metres_per_aerial_px": opts.tile_metres / opts.aerial_px,
        },
    )
