"""The generated world in VIGOR mode: overlapping aerial tiles, panoramas anywhere.

Aerial tiles of side L are cut on a grid of stride L/2 (50% overlap in both directions),
so every point is covered by four tiles: the positive (the point lies in its central
L/2 x L/2 square) and three semi-positives. Panoramas are ray-cast at random open-ground
points, never at tile centres. A few distractor tiles cover no panorama. Splits:
``same-area`` (train and test panoramas over the whole map, one shared gallery) and
``cross-area`` (train and test in disjoint map regions, each with its own tiles).

Positions are in a metric plane, (east, north) metres as in the real VIGOR loader;
``offsets[i, k]`` = panorama minus centre of its k-th tile (positive first).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field

from benchmark import distributed
from benchmark.data.base import CrossViewSplit, DatasetBundle
from benchmark.data.synthetic import SyntheticOptions, appearance, load_or_generate, sample_points
from benchmark.data.world import World, WorldParams
from benchmark.errors import BenchmarkError
from benchmark.metrics import VIGOR_TILE_METRES
from benchmark.specs import DatasetSpec

SPLITS = ("same-area", "cross-area")


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
    want = n
    for _ in range(6):
        pts = sample_points(rng, world, int(want * 1.25) + 8, box, spacing)
        free = ~np.isin(four_tiles(pts, ys, xs), distractors).any(1)
        if free.sum() >= n:
            return pts[free][:n]
        want *= 2
    raise BenchmarkError(
        f"Could not place {n} panoramas outside the distractor tiles; lower "
        "dataset_options.distractor_fraction or the number of panoramas."
    )


def render(
    rng: np.random.Generator,
    images: int,
    draw: Callable[[int, int], np.ndarray],
    label: str,
    ground: bool,
) -> np.ndarray:
    """Render IMAGES images with DRAW(start, stop) in chunks of 256 and apply appearance."""
    out = []
    for start in distributed.progress(range(0, images, 256), desc=label, leave=False, unit="chunk"):
        out.append(appearance(rng, draw(start, min(images, start + 256)), ground=ground))
    return np.concatenate(out)


def generate_vigor(opts: SyntheticVigorOptions, split: str) -> dict[str, np.ndarray]:
    """Tiles, panoramas and labels of SPLIT (deterministic in the seed)."""
    world = World(WorldParams(seed=opts.seed, map_px=opts.map_px))
    rng = np.random.default_rng(opts.seed + 7)
    size, tile = world.size_metres, opts.tile_metres
    split_x = size * opts.test_fraction
    if split == "same-area":
        regions = {"all": ((0.0, size), ("train", "test"))}
    else:
        regions = {"test": ((0.0, split_x), ("test",)), "train": ((split_x, size), ("train",))}
    data: dict[str, np.ndarray] = {}
    sides = {"train": opts.n_train, "test": opts.n_test}
    for region, (span, users) in regions.items():
        ys = tile_axis(0.0, size, tile)
        xs = tile_axis(span[0], span[1], tile)
        centres = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
        k = len(centres)
        n_d = max(1, round(opts.distractor_fraction * k)) if opts.distractor_fraction else 0
        distractors = np.sort(rng.choice(k, size=n_d, replace=False))
        pts = place_panoramas(
            rng, world, sum(sides[s] for s in users), ys, xs, distractors, opts.min_spacing
        )
        data[f"{region}_aerial"] = render(
            rng,
            k,
            lambda a, b, c=centres: world.aerial(c[a:b], tile, opts.aerial_px),
            f"vigor tiles {region}",
            ground=False,
        )
        data[f"{region}_centres"] = centres.astype(np.float64)
        data[f"{region}_distractors"] = distractors
        start = 0
        for side in users:
            p = pts[start : start + sides[side]]
            start += sides[side]
            data[f"{side}_yx"] = p
            data[f"{side}_tiles"] = four_tiles(p, ys, xs)
            data[f"{side}_ground"] = render(
                rng,
                len(p),
                lambda a, b, q=p: world.panoramas(q[a:b], *opts.ground_px),
                f"vigor panoramas {side}",
                ground=True,
            )
    return data


def vigor_split(data: dict[str, np.ndarray], side: str, region: str, tile: float) -> CrossViewSplit:
    """The CrossViewSplit of SIDE whose gallery is the tiles of REGION."""
    ground, aerial = data[f"{side}_ground"], data[f"{region}_aerial"]
    tiles = data[f"{side}_tiles"].astype(np.int64)
    ground_xy = east_north(data[f"{side}_yx"])
    aerial_xy = east_north(data[f"{region}_centres"])
    return CrossViewSplit(
        name=side,
        load_ground=lambda i: ground[i],
        load_aerial=lambda j: aerial[j],
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


def build_synthetic_vigor(
    root: Path | None, split: str, options: dict | None = None
) -> DatasetBundle:
    """The synthetic VIGOR-style dataset (root is unused: it needs no download)."""
    if split not in SPLITS:
        raise BenchmarkError(
            f"synthetic-vigor has splits 'same-area' and 'cross-area', not {split!r}."
        )
    opts = SyntheticVigorOptions(**(options or {}))
    data = load_or_generate(opts, lambda o: generate_vigor(o, split), kind=f"vigor-{split}")
    same = split == "same-area"
    tile = opts.tile_metres
    return DatasetBundle(
        name="synthetic-vigor",
        split=split,
        train=vigor_split(data, "train", "all" if same else "train", tile),
        test=vigor_split(data, "test", "all" if same else "test", tile),
        info={
            "options": opts.model_dump(),
            "metres_per_px": WorldParams(seed=opts.seed, map_px=opts.map_px).metres_per_px,
            "metres_per_aerial_px": tile / opts.aerial_px,
            "vigor_10m_equivalent": 10.0 * tile / VIGOR_TILE_METRES,
        },
    )


SPEC = DatasetSpec(
    name="synthetic-vigor",
    splits=SPLITS,
    default_split="same-area",
    build=build_synthetic_vigor,
    description="generated world in VIGOR mode: 50%-overlap tiles, panoramas anywhere, "
    "positive + 3 semi-positives with metric offsets",
    needs_root=False,
)
