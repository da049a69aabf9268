"""VIGOR (Zhu et al., CVPR 2021): splits 'same-area' and 'cross-area' over four cities.

Panorama names carry their GPS (``<id>,<lat>,<lon>,.jpg``), tile names their centre
(``satellite_<lat>_<lon>.png``). A label line has 13 space-separated tokens: the
panorama, then four (tile, d0, d1) triples: the positive and three semi-positives, with
the panorama at pixel (320 + d0, 320 - d1) of the 640 px tile (VIGOR's convention:
d0 > 0 means south of the tile centre, d1 > 0 west). The tile index is the line order of
``satellite_list.txt`` concatenated over the cities in VIGOR's order.

Metric plane: each city is projected equirectangularly around the mean of its tile
centres (x east, y north, in metres, Earth radius 6,371,004 m as in VIGOR's
evaluation); city k is then translated by k x 10,000 km along x, so a retrieval in the
wrong city is never within any metre threshold. ``meta['plane_origins']`` keeps each
city's reference, so plane_to_latlon recovers GPS positions (metre metrics measure
great-circle distances). Offsets come from the label pixels at 0.114 m/px; the pixels
themselves are kept in ``meta['offsets_px']``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np

from benchmark.data.base import DatasetBundle, SourceGeometry
from benchmark.data.files import inside, refuse_special
from benchmark.data.images import LoadOptions
from benchmark.data.layouts import Inventory, Listing, bundle_from, layout_error
from benchmark.errors import BenchmarkError
from benchmark.specs import DatasetSpec

CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
SPLITS = {
    "same-area": {
        "train": (CITIES, "same_area_balanced_train"),
        "test": (CITIES, "same_area_balanced_test"),
    },
    "cross-area": {
        "train": (("NewYork", "Seattle"), "pano_label_balanced"),
        "test": (("SanFrancisco", "Chicago"), "pano_label_balanced"),
    },
}
OFFICIAL = {
    "same-area": {"train pairs": 52_609, "test pairs": 52_605, "test tiles": 90_618},
    "cross-area": {"train pairs": 51_520, "test pairs": 53_694},
}
METRES_PER_PX = 0.114
HALF_TILE_PX = 320
TILE_PX = 640
EARTH_RADIUS_M = 6_371_004.0
CITY_SEPARATION_M = 1.0e7
PROJECTION = (
    "per-city equirectangular plane around the mean tile centre (x east, y north, metres, "
    "R = 6,371,004 m); city k shifted by k x 1e7 m in x, cities in VIGOR's order"
)


class VigorOptions(LoadOptions):
    """VIGOR reading options: which labels (original, or the corrected variant)."""

    labels: Literal["original", "corrected"] = "original"


def pano_latlon(name: str) -> tuple[float, float]:
    """(lat, lon) from a panorama file name ``<id>,<lat>,<lon>,.jpg``."""
    parts = name.split(",")
    try:
        return float(parts[-3]), float(parts[-2])
    except (IndexError, ValueError):
        raise BenchmarkError(
            f"Panorama name {name!r} is not '<id>,<lat>,<lon>,.jpg' as in VIGOR."
        ) from None


def tile_latlon(name: str) -> tuple[float, float]:
    """(lat, lon) of the centre from a tile file name ``satellite_<lat>_<lon>.png``."""
    parts = name[:-4].split("_")
    try:
        return float(parts[-2]), float(parts[-1])
    except (IndexError, ValueError):
        raise BenchmarkError(
            f"Tile name {name!r} is not 'satellite_<lat>_<lon>.png' as in VIGOR."
        ) from None


def half_tile_degrees(lat: float) -> tuple[float, float]:
    """Degrees of latitude and longitude spanned by 320 px (36.48 m) at latitude LAT."""
    d = HALF_TILE_PX * METRES_PER_PX / EARTH_RADIUS_M
    dlat = math.degrees(d)
    dlon = math.degrees(2 * math.asin(math.sin(d / 2) / math.cos(math.radians(lat))))
    return dlat, dlon


def delta_to_gps(tile: tuple[float, float], delta: tuple[float, float]) -> tuple[float, float]:
    """The panorama (lat, lon) from its tile centre and label pixels (VIGOR's formula)."""
    dlat, dlon = half_tile_degrees(tile[0])
    return (
        tile[0] - dlat * delta[0] / HALF_TILE_PX,
        tile[1] - dlon * delta[1] / HALF_TILE_PX,
    )


def to_plane(latlon: np.ndarray, ref: tuple[float, float], city: int) -> np.ndarray:
    """(n, 2) metres (east, north) of LATLON in the plane of city number CITY (see module)."""
    lat, lon = np.radians(latlon[:, 0]), np.radians(latlon[:, 1])
    lat0, lon0 = math.radians(ref[0]), math.radians(ref[1])
    east = EARTH_RADIUS_M * math.cos(lat0) * (lon - lon0) + city * CITY_SEPARATION_M
    north = EARTH_RADIUS_M * (lat - lat0)
    return np.stack([east, north], axis=1)


def city_of(xy: np.ndarray) -> np.ndarray:
    """City number (index in CITIES) of each plane point, from its shift along x."""
    return np.rint(np.asarray(xy)[:, 0] / CITY_SEPARATION_M).astype(np.int64)


def plane_to_latlon(xy: np.ndarray, origins: list) -> np.ndarray:
    """(n, 2) (lat, lon) degrees of plane points (the inverse of to_plane); ORIGINS[k] is
    city k's (lat, lon) reference, as in a split's ``meta['plane_origins']``."""
    xy = np.asarray(xy, dtype=np.float64)
    city = city_of(xy)
    ref = np.radians([origins[c] for c in city]).reshape(-1, 2)
    lat = ref[:, 0] + xy[:, 1] / EARTH_RADIUS_M
    east = xy[:, 0] - city * CITY_SEPARATION_M
    lon = ref[:, 1] + east / (EARTH_RADIUS_M * np.cos(ref[:, 0]))
    return np.degrees(np.stack([lat, lon], axis=1))


def city_dirs(root: Path, city: str) -> tuple[Path, Path]:
    """(panorama folder, satellite folder) of CITY in the original or re-organised layout."""
    if (root / "ground" / city).is_dir() and not (root / city).is_dir():
        return root / "ground" / city, root / "satellite" / city
    return root / city / "panorama", root / city / "satellite"


def label_file(root: Path, city: str, stem: str, labels: str) -> Path:
    """The label file STEM of CITY: original, or SliceMatch's corrected variant."""
    if labels == "corrected":
        return root / "splits__corrected" / city / f"{stem}__corrected.txt"
    return root / "splits" / city / f"{stem}.txt"


def locate(root: Path | None, split: str, labels: str) -> Path:
    """ROOT when it holds every file SPLIT needs; else a layout error naming what is missing."""
    if root is None:
        raise BenchmarkError("Dataset vigor needs --data-root pointing at your VIGOR folder.")
    root = Path(root).expanduser()
    missing = []
    for cities, stem in SPLITS[split].values():
        for city in cities:
            pano, sat = city_dirs(root, city)
            for path in (
                pano,
                sat,
                root / "splits" / city / "satellite_list.txt",
                label_file(root, city, stem, labels),
            ):
                rel = str(path.relative_to(root))
                if not path.exists() and rel not in missing:
                    missing.append(rel)
    if missing:
        raise layout_error("vigor", root, missing)
    return root


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines of a text file."""
    lines = enumerate(path.read_text().splitlines(), start=1)
    return [(n, line.strip()) for n, line in lines if line.strip()]


def listing(root: Path, cities: tuple[str, ...], stem: str, labels: str, side: str) -> Listing:
    """One side: the tiles of CITIES (the gallery) and the labelled panoramas of STEM."""
    tiles: list[str] = []
    tile_xy: list[np.ndarray] = []
    index: dict[tuple[str, str], int] = {}
    ground: list[str] = []
    origin: dict[str, list[str]] = {"ground": [], "aerial": []}  # file and line naming each
    ground_xy: list[np.ndarray] = []
    labelled: list[list[int]] = []
    deltas: list[list[list[float]]] = []
    origins: list[list[float] | None] = [None] * len(CITIES)
    for city in cities:
        number = CITIES.index(city)
        pano_dir, sat_dir = city_dirs(root, city)
        listed = root / "splits" / city / "satellite_list.txt"
        names = read_lines(listed)
        latlon = np.array([tile_latlon(name) for _, name in names]).reshape(-1, 2)
        ref = (float(latlon[:, 0].mean()), float(latlon[:, 1].mean())) if len(names) else (0, 0)
        origins[number] = list(ref)
        for n, name in names:
            index[(city, name)] = len(tiles)
            origin["aerial"].append(f"{listed} line {n}")
            tiles.append(inside(sat_dir, name, origin["aerial"][-1]))
        tile_xy.append(to_plane(latlon, ref, number))
        path = label_file(root, city, stem, labels)
        pano_latlons = []
        for n, line in read_lines(path):
            tok = line.split()
            if len(tok) != 13:
                raise BenchmarkError(
                    f"{path} line {n} has {len(tok)} tokens, expected 13 (panorama, then "
                    "tile d0 d1 four times). Restore the file from the VIGOR download."
                )
            try:
                labelled.append([index[(city, tok[k])] for k in (1, 4, 7, 10)])
                deltas.append([[float(tok[k]), float(tok[k + 1])] for k in (2, 5, 8, 11)])
            except KeyError as exc:
                raise BenchmarkError(
                    f"{path} line {n} names tile {exc.args[0][1]}, which is not in "
                    f"splits/{city}/satellite_list.txt."
                ) from None
            except ValueError:
                raise BenchmarkError(f"{path} line {n}: offsets must be numbers.") from None
            origin["ground"].append(f"{path} line {n}")
            ground.append(inside(pano_dir, tok[0], origin["ground"][-1]))
            pano_latlons.append(pano_latlon(tok[0]))
        ground_xy.append(to_plane(np.array(pano_latlons).reshape(-1, 2), ref, number))
    refuse_special(ground, origin["ground"].__getitem__)
    refuse_special(tiles, origin["aerial"].__getitem__)
    idx = np.array(labelled, dtype=np.int64).reshape(-1, 4)
    px = np.array(deltas, dtype=np.float64).reshape(-1, 4, 2)
    offsets = np.stack([-px[..., 1], -px[..., 0]], axis=-1) * METRES_PER_PX
    return Listing(
        name=side,
        ground=ground,
        aerial=tiles,
        positives=idx[:, 0],
        semi_positives=idx[:, 1:],
        ground_xy=np.concatenate(ground_xy),
        aerial_xy=np.concatenate(tile_xy),
        offsets=offsets,
        aerial_tile_metres=TILE_PX * METRES_PER_PX,
        per_ground={"offsets_px": px},
        meta={
            "cities": list(cities),
            "label_file": stem,
            "labels": labels,
            "metres_per_px": METRES_PER_PX,
            "offsets": "ground minus tile centre (east, north) m; offsets_px = label (d0, d1)",
            "projection": PROJECTION,
            "plane_origins": origins,
        },
    )


def inventory(root: Path | None, split: str, labels: str = "original") -> Inventory:
    """What a VIGOR folder holds for SPLIT ('same-area' or 'cross-area')."""
    if split not in SPLITS:
        raise BenchmarkError(f"VIGOR has splits 'same-area' and 'cross-area', not {split!r}.")
    root = locate(root, split, labels)
    corrected = (root / "splits__corrected").is_dir()
    found = [
        f"cities {', '.join(c for c in CITIES if city_dirs(root, c)[0].is_dir())} in {root}",
        f"using {labels} labels"
        + (
            ""
            if labels == "corrected" or not corrected
            else " (corrected labels are present: dataset_options.labels=corrected uses them)"
        ),
    ]
    sides = {
        side: listing(root, cities, stem, labels, side)
        for side, (cities, stem) in SPLITS[split].items()
    }
    return Inventory("vigor", split, root, found, sides, dict(OFFICIAL[split]))


def build_vigor(root: Path | None, split: str, options: dict | None = None) -> DatasetBundle:
    """VIGOR same-area or cross-area: positives, semi-positives, offsets and metric positions."""
    opts = VigorOptions(**(options or {}))
    return bundle_from(inventory(root, split, opts.labels), opts, SourceGeometry())


SPEC = DatasetSpec(
    name="vigor",
    splits=("same-area", "cross-area"),
    default_split="same-area",
    build=build_vigor,
    description="VIGOR same-area (52,609 / 52,605, 90,618 tiles) and cross-area "
    "(51,520 / 53,694); 640 px tiles at 0.114 m/px, 2048x1024 panoramas",
)
