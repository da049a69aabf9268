"""The default dataset: a generated cross-view world (CVUSA-like, ground at tile centres).

Generated deterministically from a seed, with no download, and cached on disk. The user
asks for pairs, not pixels: one map of 1536 px (768 m) holds the default 1,000 training
and 500 test pairs (and up to 4,317 and 1,939); a larger request is spread over as many
maps of that size as it needs (map i > 0 is another place drawn from the same seed; see
``world.map_rng``). On each map, train and test points come from disjoint strips separated
by a full tile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchmark.data.base import CrossViewSplit, DatasetBundle
from benchmark.data.world import World, WorldParams, map_rng
from benchmark.data.world_cache import Shapes, load_or_generate, world_progress
from benchmark.data.world_plan import Plan, plan_maps, region_capacity
from benchmark.errors import BenchmarkError

PAIRS_STREAM = 1  # map_rng stream of point placement and appearance
CHUNK = 256  # images rendered (and given their appearance) together


class SyntheticOptions(BaseModel):
    """Size and appearance of the generated world (``--set dataset_options.KEY=VALUE``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)
    n_train: int = Field(1000, ge=1)
    n_test: int = Field(500, ge=1)
    ground_px: tuple[int, int] = (64, 256)
    aerial_px: int = Field(128, ge=8)
    tile_metres: float = Field(64.0, gt=0)
    min_spacing: float = Field(6.0, ge=0, description="minimum metres between two points")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="share of the map used for test")
    map_px: int | None = Field(
        None,
        ge=256,
        description="side of one map in pixels (0.5 m each); unset: as many 1536-px maps "
        "as the pairs need, set: exactly one map of this size",
    )

    def world_params(self, plan: Plan, index: int = 0) -> WorldParams:
        """The parameters of map INDEX of PLAN."""
        return WorldParams(seed=self.seed, index=index, map_px=plan.map_px)


def sample_points(
    rng: np.random.Generator,
    world: World,
    n: int,
    box: tuple[float, float, float, float],
    spacing: float,
    taken: np.ndarray | None = None,
) -> np.ndarray:
    """N open-ground points (metres, row/col) inside BOX, at least SPACING apart.

    Candidates are drawn one at a time and kept when on open ground and SPACING from every
    kept point (and from the points TAKEN earlier); a grid of SPACING-sized cells finds the
    near ones, so the result is the same as comparing with all of them.
    """
    y0, y1, x0, x1 = box
    mpp = world.params.metres_per_px
    cell = spacing * (1 + 1e-9) if spacing > 0 else 0.0  # near points lie in adjacent cells
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def key(y: float, x: float) -> tuple[int, int]:
        return int(y // cell), int(x // cell)

    if cell:
        for y, x in np.asarray(taken if taken is not None else [], dtype=float).reshape(-1, 2):
            grid.setdefault(key(y, x), []).append((float(y), float(x)))
    low, high = [y0, x0], [y1, x1]
    out = np.empty((n, 2))
    count = tries = 0
    while count < n:
        tries += 1
        if tries > 200 * n:
            raise BenchmarkError(
                f"Could not place {n} points {spacing} m apart on open ground of the "
                "generated map; lower the number of pairs or dataset_options.min_spacing."
            )
        p = rng.uniform(low, high)
        y, x = float(p[0]), float(p[1])
        if world.height[int(y / mpp), int(x / mpp)] > 0:
            continue
        if cell:
            gy, gx = key(y, x)
            if any(
                (qy - y) * (qy - y) + (qx - x) * (qx - x) < spacing * spacing
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                for qy, qx in grid.get((gy + dy, gx + dx), ())
            ):
                continue
            grid.setdefault((gy, gx), []).append((y, x))
        out[count] = p
        count += 1
    return out


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


def strips(size: float, opts: SyntheticOptions) -> dict[str, tuple[float, float, float, float]]:
    """The (y0, y1, x0, x1) boxes, in metres, of the test and train points of one map."""
    half = opts.tile_metres / 2
    split_x = size * opts.test_fraction
    return {
        "train": (half, size - half, split_x + opts.tile_metres, size - half),
        "test": (half, size - half, half, split_x),
    }


def plan(opts: SyntheticOptions) -> Plan:
    """How many maps of what size hold OPTS' pairs; a BenchmarkError if they cannot fit."""

    def capacity(map_px: int) -> dict[tuple[str, ...], int]:
        size = map_px * WorldParams.metres_per_px
        return {
            (side,): region_capacity((y1 - y0) * (x1 - x0), opts.min_spacing)
            if y1 > y0 and x1 > x0
            else 0
            for side, (y0, y1, x0, x1) in strips(size, opts).items()
        }

    requests = {"train": opts.n_train, "test": opts.n_test}
    return plan_maps(requests, capacity, opts.map_px, opts.min_spacing, "pairs")


def map_offset(plan: Plan, index: int) -> float:
    """Metres east of map 0 at which map INDEX lies (a map-width of nothing between maps)."""
    return index * 2 * plan.map_metres


def shapes(opts: SyntheticOptions) -> Shapes:
    """Name -> (shape, dtype) of every array the world holds."""
    out: Shapes = {}
    for side, n in (("train", opts.n_train), ("test", opts.n_test)):
        out[f"{side}_ground"] = ((n, *opts.ground_px, 3), np.uint8)
        out[f"{side}_aerial"] = ((n, opts.aerial_px, opts.aerial_px, 3), np.uint8)
        out[f"{side}_xy"] = ((n, 2), np.float32)
    return out


def generate(opts: SyntheticOptions, layout: Plan, arrays: dict[str, np.ndarray]) -> None:
    """Fill ARRAYS with the world's train and test images and positions (from the seed).

    Map by map: its train points, their images, then its test points and theirs, all from
    the map's own generator, in chunks of 256; a one-map world is the one this project
    has always generated.
    """
    done = {"train": 0, "test": 0}
    with world_progress(opts.n_train + opts.n_test, "synthetic world") as bar:
        for index in range(layout.maps):
            world = World(opts.world_params(layout, index))
            rng = map_rng(opts.seed, index, PAIRS_STREAM)
            boxes = strips(world.size_metres, opts)
            for side in ("train", "test"):
                n = layout.counts[side][index]
                pts = sample_points(rng, world, n, boxes[side], opts.min_spacing)
                for start in range(0, n, CHUNK):
                    chunk = pts[start : start + CHUNK]
                    at = slice(done[side] + start, done[side] + start + len(chunk))
                    arrays[f"{side}_ground"][at] = appearance(
                        rng, world.panoramas(chunk, *opts.ground_px), ground=True
                    )
                    arrays[f"{side}_aerial"][at] = appearance(
                        rng, world.aerial(chunk, opts.tile_metres, opts.aerial_px), ground=False
                    )
                    bar.update(len(chunk))
                xy = pts + [0.0, map_offset(layout, index)]
                arrays[f"{side}_xy"][done[side] : done[side] + n] = xy
                done[side] += n


def load_world(opts: SyntheticOptions) -> tuple[dict[str, np.ndarray], Plan]:
    """The world of OPTS from the cache, or generated (and cached when possible)."""
    layout = plan(opts)
    key = {"opts": opts.model_dump(exclude={"map_px"}), "plan": layout.describe(), "v": 2}
    what = f"synthetic world: {layout.describe()}, {opts.n_train:,} + {opts.n_test:,} pairs"
    data = load_or_generate(
        "world", key, shapes(opts), lambda arrays: generate(opts, layout, arrays), what
    )
    return data, layout


def image_reader(images: np.ndarray) -> Callable[[int], np.ndarray]:
    """A loader of image i of IMAGES (a writable copy: the cache is read-only)."""
    return lambda i: np.array(images[i])


def _split(
    name: str, ground: np.ndarray, aerial: np.ndarray, xy: np.ndarray, tile: float
) -> CrossViewSplit:
    return CrossViewSplit(
        name=name,
        load_ground=image_reader(ground),
        load_aerial=image_reader(aerial),
        num_ground=len(ground),
        num_aerial=len(aerial),
        positives=np.arange(len(ground)),
        ground_xy=xy,
        aerial_xy=xy,
        aerial_tile_metres=tile,
    )


def check_synthetic(split: str, options: dict | None = None) -> None:
    """Validate OPTIONS and that their pairs fit, before any generation."""
    plan(SyntheticOptions(**(options or {})))


def build_synthetic(root: Path | None, split: str, options: dict | None = None) -> DatasetBundle:
    """The synthetic CVUSA-like dataset (root is unused: it needs no download)."""
    opts = SyntheticOptions(**(options or {}))
    data, layout = load_world(opts)
    tile = opts.tile_metres
    return DatasetBundle(
        name="synthetic",
        split=split,
        train=_split("train", data["train_ground"], data["train_aerial"], data["train_xy"], tile),
        test=_split("test", data["test_ground"], data["test_aerial"], data["test_xy"], tile),
        info={
            "options": opts.model_dump(),
            "world": layout.summary(),
            "metres_per_aerial_px": tile / opts.aerial_px,
        },
    )
