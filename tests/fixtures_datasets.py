"""Writers of small CVUSA, CVACT and VIGOR folders in exactly their official formats.

Pixel sizes are reduced; file names, split files, the .mat layout and label lines are
as distributed. Every image carries a code colour in its top-left 16x16 block so a test
can tell which file a loader returned (``code_colour`` / ``read_code``). Geometry here
(polar sampling, VIGOR label offsets) is written independently of the harness's code.
"""

from __future__ import annotations

import math
import random
import string
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from scipy import ndimage

CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
CITY_BASE = {
    "NewYork": (40.7309416656, -73.9953203614),
    "Seattle": (47.5929861, -122.3002754),
    "SanFrancisco": (37.7788354, -122.4193573),
    "Chicago": (41.887485897337505, -87.64890082900035),
}
REAL_NEWYORK_PANO = "rTW64elYRVtD5DWJ9kBgnA,40.731011,-73.995289,.jpg"
REAL_NEWYORK_TILE = "satellite_40.7309416656_-73.9953203614.png"
EARTH_RADIUS_M = 6_371_004.0
STEP_M = 36.48  # 320 px at 0.114 m/px: the VIGOR tile grid step


def code_colour(k: int) -> tuple[int, int, int]:
    """A colour identifying item K (components 28..227)."""
    return (28 + (37 * k) % 200, 28 + (91 * k + 60) % 200, 28 + (53 * k + 120) % 200)


def read_code(image: np.ndarray) -> np.ndarray:
    """The mean colour of the code block of a decoded image."""
    return image[4:12, 4:12].reshape(-1, 3).mean(axis=0)


def coded_image(h: int, w: int, k: int) -> np.ndarray:
    """A smooth textured HxW image with item K's code colour in its top-left 16x16 block."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = k * 0.7
    img = np.stack(
        [
            127 + 100 * np.sin(x / 7.0 + phase) * np.cos(y / 9.0),
            127 + 100 * np.cos(x / 5.0 - phase) * np.sin(y / 6.0 + 1),
            127 + 90 * np.sin((x + y) / 11.0 + 2 * phase),
        ],
        axis=-1,
    )
    img[:16, :16] = code_colour(k)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, image: np.ndarray) -> None:
    """Write IMAGE as JPEG (quality 95) or PNG by PATH's extension, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(image).save(path, **kwargs)


def safa_polar(aerial: np.ndarray, height: int, width: int) -> np.ndarray:
    """SAFA's polar map of a square aerial image (bilinear), written independently."""
    s = aerial.shape[0]
    i, j = np.mgrid[0:height, 0:width].astype(np.float64)
    rho = (s / 2.0) * (height - 1 - i) / height
    theta = 2 * np.pi * j / width
    rows = s / 2.0 + rho * np.cos(theta)
    cols = s / 2.0 - rho * np.sin(theta)
    out = [
        ndimage.map_coordinates(
            aerial[..., c].astype(np.float64), [rows, cols], order=1, mode="constant"
        )
        for c in range(3)
    ]
    return np.clip(np.round(np.stack(out, axis=-1)), 0, 255).astype(np.uint8)


def write_cvusa(
    root: Path,
    n_train: int = 10,
    n_test: int = 6,
    ground: tuple[int, int] = (28, 154),
    aerial: int = 48,
    polar: tuple[int, int] | None = None,
) -> dict:
    """A CVUSA folder: splits/*.csv, bingmap/19, streetview/panos (+ polarmap/19)."""
    ids = [f"{k:07d}" for k in range(1, 2 * (n_train + n_test), 2)]  # odd ids, 1-based
    sides = {"train": ids[:n_train], "test": ids[n_train:]}
    files = {"train": "train-19zl.csv", "test": "val-19zl.csv"}
    for side, side_ids in sides.items():
        lines = [
            f"bingmap/19/{i}.jpg,streetview/panos/{i}.jpg,streetview/annotations/{i}.png"
            for i in side_ids
        ]
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / files[side]).write_text("\n".join(lines) + "\n")
        for i in side_ids:
            save(root / "streetview/panos" / f"{i}.jpg", coded_image(*ground, int(i)))
            tile = root / "bingmap/19" / f"{i}.jpg"
            save(tile, coded_image(aerial, aerial, int(i)))
            if polar is not None:
                decoded = np.asarray(Image.open(tile).convert("RGB"))
                save(root / "polarmap/19" / f"{i}.png", safa_polar(decoded, *polar))
    return sides


def pano_id(rng: random.Random) -> str:
    """A 22-character Google-style panorama id (may start with '-')."""
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(22))


def write_cvact(
    root: Path,
    n: int = 30,
    n_train: int = 12,
    n_val: int = 6,
    mat_in_small: bool = False,
    pano: tuple[int, int] = (32, 64),
    aerial: int = 40,
) -> dict:
    """A CVACT folder: ACT_data.mat (1-based index structs), ANU_data_small, ANU_data_test."""
    rng = random.Random(7)
    ids = [pano_id(rng) for _ in range(n)]
    utm = np.column_stack([690_000 + np.arange(n) * 13.5, 6_090_000 - np.arange(n) * 7.25])
    order = np.random.default_rng(3).permutation(n)
    train, rest = np.sort(order[:n_train]), order[n_train:]
    val, test_all = rest[:n_val], rest
    small, test = root / "ANU_data_small", root / "ANU_data_test"

    def column(rows: np.ndarray, dtype: type) -> np.ndarray:
        return (rows + 1)[:, None].astype(dtype)  # 1-based, an (n, 1) column as in MATLAB

    mat = {  # a first field before the index field, as S4G's positional [0][0][1] implies
        "panoIds": np.array(ids),
        "utm": utm,
        "trainSet": {"trainNum": np.array([[n_train]]), "trainInd": column(train, np.uint16)},
        "valSet": {"valNum": np.array([[n_val]]), "valInd": column(val, np.uint8)},
        "valSetAll": {"valNum": np.array([[len(rest)]]), "valInd": column(test_all, np.float64)},
    }
    mat_path = (small if mat_in_small else root) / "ACT_data.mat"
    mat_path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(mat_path, mat)
    for folder, rows in ((small, np.concatenate([train, val])), (test, test_all)):
        for r in rows:
            save(folder / "streetview" / f"{ids[r]}_grdView.jpg", coded_image(*pano, int(r)))
            save(
                folder / "satview_polish" / f"{ids[r]}_satView_polish.jpg",
                coded_image(aerial, aerial, int(r)),
            )
    return {"ids": ids, "utm": utm, "train": train, "val": val, "test": test_all, "mat": mat_path}


def grid_degrees(lat: float) -> tuple[float, float]:
    """Degrees of latitude and longitude of one 36.48 m grid step at LAT."""
    dlat = math.degrees(STEP_M / EARTH_RADIUS_M)
    return dlat, dlat / math.cos(math.radians(lat))


def tile_name(city: str, lat: float, lon: float) -> str:
    """A tile file name: 10 decimals in New York, full float repr elsewhere (as distributed)."""
    if city == "NewYork":
        return f"satellite_{lat:.10f}_{lon:.10f}.png"
    return f"satellite_{lat!r}_{lon!r}.png"


def _latlon(name: str) -> tuple[float, float]:
    parts = name[:-4].split("_")
    return float(parts[1]), float(parts[2])


def write_vigor(
    root: Path,
    grid: int = 4,
    per_city: int = 8,
    corrected: bool = False,
    reorganised: bool = False,
    pano: tuple[int, int] = (16, 32),
    tile: int = 16,
) -> dict:
    """A VIGOR folder: four cities of tiles on a 50%-overlap grid and labelled panoramas."""
    rng = random.Random(11)
    info: dict = {"tiles": {}, "panos": {}, "tile_code": {}}
    code = 0
    for city in CITIES:
        pano_dir = root / ("ground/" + city if reorganised else city + "/panorama")
        sat_dir = root / ("satellite/" + city if reorganised else city + "/satellite")
        lat0, lon0 = CITY_BASE[city]
        dlat, dlon = grid_degrees(lat0)
        names = {}
        for r in range(grid):
            for c in range(grid):
                names[(r, c)] = tile_name(city, lat0 + r * dlat, lon0 + c * dlon)
                info["tile_code"][(city, names[(r, c)])] = code
                save(sat_dir / names[(r, c)], coded_image(tile, tile, code))
                code += 1
        listed = list(names.values())
        rng.shuffle(listed)
        (root / "splits" / city).mkdir(parents=True, exist_ok=True)
        (root / "splits" / city / "satellite_list.txt").write_text("\n".join(listed) + "\n")
        panos = []
        for k in range(per_city):
            if city == "NewYork" and k == 0:
                name = REAL_NEWYORK_PANO
            else:
                fr, fc = rng.uniform(0.05, grid - 1.05), rng.uniform(0.05, grid - 1.05)
                name = f"{pano_id(rng)},{lat0 + fr * dlat:.6f},{lon0 + fc * dlon:.6f},.jpg"
            lat, lon = float(name.split(",")[1]), float(name.split(",")[2])
            fr, fc = (lat - lat0) / dlat, (lon - lon0) / dlon
            around = [(math.floor(fr) + a, math.floor(fc) + b) for a in (0, 1) for b in (0, 1)]
            around.sort(key=lambda rc: (rc[0] - fr) ** 2 + (rc[1] - fc) ** 2)
            triples = []
            for rc in around:
                t_lat, t_lon = _latlon(names[rc])
                u_lat, u_lon = grid_degrees(t_lat)
                d0, d1 = (t_lat - lat) / u_lat * 320, (t_lon - lon) / u_lon * 320
                triples.append((names[rc], d0, d1))
            panos.append((name, triples, (lat, lon)))
            save(pano_dir / name, coded_image(*pano, 1000 + len(info["panos"]) * 100 + k))
        info["panos"][city] = panos
        stems = {
            "same_area_balanced_train": panos[0::2],
            "same_area_balanced_test": panos[1::2],
            "pano_label_balanced": panos,
        }
        for stem, chosen in stems.items():
            lines = [
                " ".join([p] + [f"{t} {d0!r} {d1!r}" for t, d0, d1 in tr]) for p, tr, _ in chosen
            ]
            (root / "splits" / city / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            if corrected:
                fixed = [
                    " ".join([p] + [f"{t} {d0 + 1.0!r} {d1!r}" for t, d0, d1 in tr])
                    for p, tr, _ in chosen
                ]
                out = root / "splits__corrected" / city / f"{stem}__corrected.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("\n".join(fixed) + "\n")
        info["tiles"][city] = listed
    return info
