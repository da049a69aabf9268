"""How many maps of what size a generated world needs for the points asked of it.

Points are drawn at random on open ground and kept when no kept point is nearer than the
minimum spacing (random sequential adsorption). On this project's maps that drawing
stalls near 0.60 points per spacing² of region area (0.53 within 20 draws per point;
measured on seeds 0-2, see docs/SYNTHETIC.md), so a region is planned to hold 0.5 per
spacing²: a request that fits is placed quickly and never stalls.

The user asks for points, not pixels. With ``map_px`` unset the world is as many maps of
1536 px (768 m, the map every one-map world has used) as the points need; an explicit
``map_px`` is exactly one map of that size, and a request it cannot hold is refused
before anything is generated, naming the largest count that fits and the size that would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from benchmark.data.world import WorldParams
from benchmark.errors import BenchmarkError

DEFAULT_MAP_PX = 1536
POINT_DENSITY = 0.5  # points per spacing² of region area that always fit (see module)
UNLIMITED = 2**62  # capacity at zero spacing
MAX_MAP_PX = 65_536  # largest map size a refusal suggests
LABELS = {("train",): "training", ("test",): "test", ("train", "test"): "training and test"}

# map_px -> {group of sides sharing a region: points that region holds}
Capacity = Callable[[int], Mapping[tuple[str, ...], int]]


@dataclass(frozen=True)
class Plan:
    """A world's maps: their number and side, and each side's points on each map."""

    map_px: int
    maps: int
    counts: dict[str, tuple[int, ...]]

    @property
    def map_metres(self) -> float:
        """Side of one map in metres."""
        return self.map_px * WorldParams.metres_per_px

    def describe(self) -> str:
        """E.g. '3 maps of 1536 px (768 m)'."""
        plural = "s" if self.maps > 1 else ""
        return f"{self.maps} map{plural} of {self.map_px} px ({self.map_metres:.0f} m)"

    def summary(self) -> dict[str, Any]:
        """The plan as plain data (for result files)."""
        return {
            "maps": self.maps,
            "map_px": self.map_px,
            "map_metres": self.map_metres,
            "per_map": {side: list(n) for side, n in self.counts.items()},
        }


def region_capacity(area_m2: float, spacing: float) -> int:
    """Points that surely fit in a region of AREA_M2 at SPACING metres apart."""
    if area_m2 <= 0:
        return 0
    if spacing <= 0:
        return UNLIMITED
    return int(area_m2 * POINT_DENSITY / spacing**2)


def split_counts(n: int, maps: int) -> tuple[int, ...]:
    """N points over MAPS maps, as evenly as possible (the first maps take the remainder)."""
    return tuple(n // maps + (i < n % maps) for i in range(maps))


def fits(requests: Mapping[str, int], caps: Mapping[tuple[str, ...], int], maps: int) -> bool:
    """Whether REQUESTS spread over MAPS maps fit every region's capacity CAPS."""
    return all(
        sum(-(-requests[side] // maps) for side in group) <= cap for group, cap in caps.items()
    )


def plan_maps(
    requests: Mapping[str, int],
    capacity: Capacity,
    map_px: int | None,
    spacing: float,
    noun: str,
) -> Plan:
    """The maps that hold REQUESTS (side -> points); a BenchmarkError when MAP_PX cannot."""
    if map_px is not None:
        if fits(requests, capacity(map_px), 1):
            return Plan(map_px, 1, {side: (n,) for side, n in requests.items()})
        raise BenchmarkError(refusal(requests, capacity, map_px, spacing, noun))
    caps = capacity(DEFAULT_MAP_PX)
    if any(cap == 0 for cap in caps.values()):
        raise BenchmarkError(
            f"A {DEFAULT_MAP_PX}-px map leaves no room for {noun} at these settings (a "
            "region is narrower than a tile); lower dataset_options.tile_metres, change "
            "dataset_options.test_fraction, or set a larger dataset_options.map_px."
        )
    maps = max(-(-sum(requests[s] for s in group) // cap) for group, cap in caps.items())
    while not fits(requests, caps, maps):
        maps += 1
    return Plan(DEFAULT_MAP_PX, maps, {side: split_counts(n, maps) for side, n in requests.items()})


def refusal(
    requests: Mapping[str, int], capacity: Capacity, map_px: int, spacing: float, noun: str
) -> str:
    """Why one map of MAP_PX cannot hold REQUESTS, what fits, and which option to change."""
    caps = capacity(map_px)
    metres = map_px * WorldParams.metres_per_px
    holds = " and ".join(f"{cap:,} {LABELS[group]}" for group, cap in caps.items())
    over = [group for group, cap in caps.items() if sum(requests[s] for s in group) > cap]
    asked = " and ".join(f"{sum(requests[s] for s in group):,} {LABELS[group]}" for group in over)
    options = " or ".join(f"dataset_options.n_{side}" for group in over for side in group)
    bigger = next(
        (px for px in range(map_px + 64, MAX_MAP_PX + 1, 64) if fits(requests, capacity(px), 1)),
        None,
    )
    grow = f", raise dataset_options.map_px to {bigger:,} or more" if bigger else ""
    return (
        f"dataset_options.map_px={map_px} makes one {metres:.0f} m map, which holds at most "
        f"{holds} {noun} {spacing:g} m apart (dataset_options.min_spacing), but {asked} "
        f"{noun} were asked for. Lower {options}{grow}, or leave map_px unset to spread the "
        f"{noun} over as many {DEFAULT_MAP_PX}-px maps as they need."
    )
