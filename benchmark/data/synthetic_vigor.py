"""The generated world in VIGOR mode: overlapping aerial tiles, panoramas anywhere.

Aerial tiles of side L are cut on a grid of stride L/2 (50% overlap in both directions),
so every point is covered by four tiles: the positive (the point lies in its central
L/2 x L/2 square) and three semi-positives. Panoramas are ray-cast at random open-ground
points, never at tile centres. A few distractor tiles cover no panorama. Splits:
``same-area`` (train and test panoramas over the whole map, one shared gallery) and
``cross-area`` (train and test in disjoint map regions, each with its own tiles).

Positions are in a metric plane, (east, north) metres as in the real VIGOR loader;
``offsets[i, k]`` = panorama minus centre of its k-th tile (positive first). Like the
synthetic world, a request larger than one 1536-px map holds is spread over several
maps (each with its own tiles, regions and distractors), a map-width apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field
from tqdm import tqdm

from benchmark.data.base import CrossViewSplit, DatasetBundle
from benchmark.data.synthetic import (
    CHUNK,
    SyntheticOptions,
    appearance,
    image_reader,
    map_offset,
    sample_points,
)
from benchmark.data.world import World, WorldParams, map_rng
from benchmark.data.world_cache import Shapes, load_or_generate, world_progress
from benchmark.data.world_plan import Plan, plan_maps, region_capacity
from benchmark.errors import BenchmarkError
from benchmark.metrics import VIGOR_TILE_METRES
from benchmark.specs import DatasetSpec

SPLITS = ("same-area", "cross-area")
VIGOR_STREAM = 7  # map_rng stream of tiles, panorama points and appearance


class SyntheticVigorOptions(SyntheticOptions):
    """The synthetic world's options plus the share of tiles kept free of panoramas."""

    distractor_fraction: float = Field(
        0.04, ge=0, lt=0.5, description="share of tiles that cover no panorama (VIGOR: ~4%)"
    )


def tile_axis(start: float, stop: float, tile: float) -> np.ndarray:
    """Centres (metres) of tiles of side TILE at stride TILE/2 that fit inside [START, STOP]."""
    count = int(np.floor((stop - start - tile) / (tile / 2) + 1e-9)) + 1
    if count < 2:
        raise BenchmarkError(
            f"A region of {stop - start:.0f} m holds fewer than 2 tiles of {tile:.0f} m; "
            "raise dataset_options.map_px or lower dataset_options.tile_metres."
        )
    return start + tile / 2 + np.arange(count) * tile / 2


def four_tiles(points: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(n, 4) grid tile ids covering each (y, x) point: positive, then the 3 semi-positives.

    Tile id = row * len(xs) + col. Points must lie within [ys[0], ys[-1]] x [xs[0], xs[-1]].
    """
    stride = ys[1] - ys[0]

    def axis(v: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        near = np.clip(np.rint((v - centres[0]) / stride).astype(np.int64), 0, len(centres) - 1)
        step = np.where(v >= centres[near], 1, -1)
        step = np.where(near + step > len(centres) - 1, -1, step)
        step = np.where(near + step < 0, 1, step)
        return near, near + step

    r0, r1 = axis(points[:, 0], ys)
    c0, c1 = axis(points[:, 1], xs)
    n = len(xs)
    return np.stack([r0 * n + c0, r1 * n + c0, r0 * n + c1, r1 * n + c1], axis=1)


def east_north(yx: np.ndarray) -> np.ndarray:
    """World (row-down y, x east) metres to (east, north) metres."""
    return np.stack([yx[:, 1], -yx[:, 0]], axis=1).astype(np.float64)


Grid = tuple[np.ndarray, np.ndarray, tuple[str, ...]]  # tile rows, tile columns, sides


def regions(size: float, opts: SyntheticVigorOptions, split: str) -> dict[str, Grid]:
    """The tile grids of one map of side SIZE metres: region -> (ys, xs, sides it holds)."""
    split_x = size * opts.test_fraction
    if split == "same-area":
        spans = {"all": ((0.0, size), ("train", "test"))}
    else:
        spans = {"test": ((0.0, split_x), ("test",)), "train": ((split_x, size), ("train",))}
    ys = tile_axis(0.0, size, opts.tile_metres)
    return {
        region: (ys, tile_axis(x0, x1, opts.tile_metres), sides)
        for region, ((x0, x1), sides) in spans.items()
    }


def distractor_count(opts: SyntheticVigorOptions, tiles: int) -> int:
    """How many of a region's TILES cover no panorama."""
    return max(1, round(opts.distractor_fraction * tiles)) if opts.distractor_fraction else 0


def plan(opts: SyntheticVigorOptions, split: str) -> Plan:
    """How many maps of what size hold the panoramas; a BenchmarkError if they cannot fit.

    A region's panoramas are drawn as 1.25 n + 8 candidates, of which those in no
    distractor tile are kept (about (1 - distractor_fraction)^4 of them; planned at 80%
    of that), topped up when short: both counts must fit the region.
    """
    groups = [("train", "test")] if split == "same-area" else [("test",), ("train",)]
    free = 0.8 * (1 - opts.distractor_fraction) ** 4

    def capacity(map_px: int) -> dict[tuple[str, ...], int]:
        try:
            grids = regions(map_px * WorldParams.metres_per_px, opts, split)
        except BenchmarkError:  # a region narrower than two tiles holds nothing
            return dict.fromkeys(groups, 0)
        caps = {}
        for ys, xs, sides in grids.values():
            cap = region_capacity((ys[-1] - ys[0]) * (xs[-1] - xs[0]), opts.min_spacing)
            caps[sides] = max(0, min(int((cap - 8) / 1.25), int(cap * free)))
        return caps

    requests = {"train": opts.n_train, "test": opts.n_test}
    return plan_maps(requests, capacity, opts.map_px, opts.min_spacing, "panoramas")


def place_panoramas(
    rng: np.random.Generator,
    world: World,
    n: int,
    ys: np.ndarray,
    xs: np.ndarray,
    distractors: np.ndarray,
    spacing: float,
) -> np.ndarray:
    """N open-ground (y, x) points inside the grid, none inside a distractor tile."""
    box = (float(ys[0]), float(ys[-1]), float(xs[0]), float(xs[-1]))

    def outside(pts: np.ndarray) -> np.ndarray:
        return pts[~np.isin(four_tiles(pts, ys, xs), distractors).any(1)]

    pts = sample_points(rng, world, int(n * 1.25) + 8, box, spacing)
    free = outside(pts)
    while len(free) < n:  # top up, apart from every point drawn so far
        more = sample_points(rng, world, int((n - len(free)) * 1.25) + 8, box, spacing, pts)
        pts = np.concatenate([pts, more])
        free = np.concatenate([free, outside(more)])
    return free[:n]


def render(
    rng: np.random.Generator,
    out: np.ndarray,
    draw: Callable[[int, int], np.ndarray],
    ground: bool,
    bar: tqdm,
) -> None:
    """Fill OUT with DRAW(start, stop) in chunks of 256, each given its appearance."""
    for start in range(0, len(out), CHUNK):
        stop = min(len(out), start + CHUNK)
        out[start:stop] = appearance(rng, draw(start, stop), ground=ground)
        bar.update(stop - start)


def shapes(opts: SyntheticVigorOptions, split: str, layout: Plan) -> Shapes:
    """Name -> (shape, dtype) of every array of the world of SPLIT laid out as LAYOUT."""
    out: Shapes = {}
    for region, (ys, xs, sides) in regions(layout.map_metres, opts, split).items():
        tiles = len(ys) * len(xs)
        out[f"{region}_aerial"] = (
            (layout.maps * tiles, opts.aerial_px, opts.aerial_px, 3),
            np.uint8,
        )
        out[f"{region}_centres"] = ((layout.maps * tiles, 2), np.float64)
        out[f"{region}_distractors"] = ((layout.maps * distractor_count(opts, tiles),), np.int64)
        for side in sides:
            n = sum(layout.counts[side])
            out[f"{side}_yx"] = ((n, 2), np.float64)
            out[f"{side}_tiles"] = ((n, 4), np.int64)
            out[f"{side}_ground"] = ((n, *opts.ground_px, 3), np.uint8)
    return out


@dataclass
class Filler:
    """The arrays being filled, how far each group of rows is filled, and the progress bar."""

    arrays: dict[str, np.ndarray]
    bar: tqdm
    done: dict[str, int] = field(default_factory=dict)

    def rows(self, group: str, n: int) -> slice:
        """The next N rows of the arrays of GROUP (named by one of its arrays)."""
        start = self.done.get(group, 0)
        self.done[group] = start + n
        return slice(start, start + n)


def fill_region(
    rng: np.random.Generator,
    world: World,
    opts: SyntheticVigorOptions,
    region: str,
    grid: Grid,
    counts: dict[str, int],
    shift: np.ndarray,
    out: Filler,
) -> None:
    """One region of one map: distractors, COUNTS panoramas per side, tiles, then panoramas.

    Positions are shifted by SHIFT (the map's place); tile ids count all maps' tiles.
    """
    ys, xs, sides = grid
    centres = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    k = len(centres)
    distractors = np.sort(rng.choice(k, size=distractor_count(opts, k), replace=False))
    pts = place_panoramas(rng, world, sum(counts.values()), ys, xs, distractors, opts.min_spacing)
    tiles = out.rows(f"{region}_aerial", k)
    render(
        rng,
        out.arrays[f"{region}_aerial"][tiles],
        lambda a, b: world.aerial(centres[a:b], opts.tile_metres, opts.aerial_px),
        False,
        out.bar,
    )
    out.arrays[f"{region}_centres"][tiles] = centres + shift
    at = out.rows(f"{region}_distractors", len(distractors))
    out.arrays[f"{region}_distractors"][at] = distractors + tiles.start
    start = 0
    for side in sides:
        p = pts[start : start + counts[side]]
        start += counts[side]
        at = out.rows(f"{side}_ground", len(p))
        out.arrays[f"{side}_yx"][at] = p + shift
        out.arrays[f"{side}_tiles"][at] = four_tiles(p, ys, xs) + tiles.start
        render(
            rng,
            out.arrays[f"{side}_ground"][at],
            lambda a, b, q=p: world.panoramas(q[a:b], *opts.ground_px),
            True,
            out.bar,
        )


def generate_vigor(
    opts: SyntheticVigorOptions, split: str, layout: Plan, arrays: dict[str, np.ndarray]
) -> None:
    """Fill ARRAYS with the tiles, panoramas and labels of SPLIT (from the seed).

    Map by map, region by region, each map from its own generator; a one-map world is the
    one this project has always generated.
    """
    total = sum(len(a) for name, a in arrays.items() if name.endswith(("_aerial", "_ground")))
    with world_progress(total, f"synthetic-vigor {split}") as bar:
        out = Filler(arrays, bar)
        for index in range(layout.maps):
            world = World(opts.world_params(layout, index))
            rng = map_rng(opts.seed, index, VIGOR_STREAM)
            shift = np.array([0.0, map_offset(layout, index)])
            for region, grid in regions(world.size_metres, opts, split).items():
                counts = {side: layout.counts[side][index] for side in grid[2]}
                fill_region(rng, world, opts, region, grid, counts, shift, out)


def vigor_split(data: dict[str, np.ndarray], side: str, region: str, tile: float) -> CrossViewSplit:
    """The CrossViewSplit of SIDE whose gallery is the tiles of REGION."""
    ground, aerial = data[f"{side}_ground"], data[f"{region}_aerial"]
    tiles = data[f"{side}_tiles"].astype(np.int64)
    ground_xy = east_north(data[f"{side}_yx"])
    aerial_xy = east_north(data[f"{region}_centres"])
    return CrossViewSplit(
        name=side,
        load_ground=image_reader(ground),
        load_aerial=image_reader(aerial),
        num_ground=len(ground),
        num_aerial=len(aerial),
        positives=tiles[:, 0],
        semi_positives=tiles[:, 1:],
        ground_xy=ground_xy,
        aerial_xy=aerial_xy,
        offsets=ground_xy[:, None, :] - aerial_xy[tiles],
        aerial_tile_metres=tile,
        meta={
            "distractor_tiles": data[f"{region}_distractors"].tolist(),
            "offsets": "panorama minus tile centre (east, north) m; positive first",
        },
    )


def check_split(split: str) -> None:
    """A BenchmarkError unless SPLIT is one of the world's splits."""
    if split not in SPLITS:
        raise BenchmarkError(
            f"synthetic-vigor has splits 'same-area' and 'cross-area', not {split!r}."
        )


def check_synthetic_vigor(split: str, options: dict | None = None) -> None:
    """Validate SPLIT, OPTIONS and that their panoramas fit, before any generation."""
    check_split(split)
    plan(SyntheticVigorOptions(**(options or {})), split)


def build_synthetic_vigor(
    root: Path | None, split: str, options: dict | None = None
) -> DatasetBundle:
    """The synthetic VIGOR-style dataset (root is unused: it needs no download)."""
    check_split(split)
    opts = SyntheticVigorOptions(**(options or {}))
    layout = plan(opts, split)
    key = {"opts": opts.model_dump(exclude={"map_px"}), "plan": layout.describe(), "v": 2}
    what = (
        f"synthetic-vigor {split} world: {layout.describe()}, "
        f"{opts.n_train:,} + {opts.n_test:,} panoramas"
    )
    data = load_or_generate(
        f"vigor-{split}",
        key,
        shapes(opts, split, layout),
        lambda arrays: generate_vigor(opts, split, layout, arrays),
        what,
    )
    same = split == "same-area"
    tile = opts.tile_metres
    return DatasetBundle(
        name="synthetic-vigor",
        split=split,
        train=vigor_split(data, "train", "all" if same else "train", tile),
        test=vigor_split(data, "test", "all" if same else "test", tile),
        info={
            "options": opts.model_dump(),
            "world": layout.summary(),
            "metres_per_px": WorldParams.metres_per_px,
            "metres_per_aerial_px": tile / opts.aerial_px,
            "vigor_10m_equivalent": 10.0 * tile / VIGOR_TILE_METRES,
        },
    )


SPEC = DatasetSpec(
    name="synthetic-vigor",
    splits=SPLITS,
    default_split="same-area",
    build=build_synthetic_vigor,
    check=check_synthetic_vigor,
    description="generated world in VIGOR mode: 50%-overlap tiles, panoramas anywhere, "
    "positive + 3 semi-positives with metric offsets",
    needs_root=False,
)
