"""A procedural cross-view world: a top-down map with heights, aerial crops, ray-cast panoramas.

The map holds land cover, a road network, buildings (with roof and wall colours) and
trees, each with a height. An aerial tile is a north-up crop of the top-down colours; a
ground panorama is rendered by casting one ray per azimuth over the height field, so the
polar transform of the aerial approximately inverts it, as on real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

LAND_COLOURS = np.array([[88, 128, 62], [170, 150, 92], [128, 110, 84]], np.float32)
ROAD_COLOUR = np.array([72, 72, 76], np.float32)
ROOF_COLOURS = np.array(
    [[150, 150, 150], [160, 82, 60], [70, 70, 78], [196, 190, 170], [110, 60, 40]], np.float32
)
WALL_COLOURS = np.array(
    [[215, 205, 185], [180, 90, 70], [150, 150, 155], [235, 235, 230], [120, 100, 80]],
    np.float32,
)
TREE_COLOUR = np.array([44, 88, 40], np.float32)
WORLD_STREAM = 0  # the map's own random stream (see map_rng)


def map_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator of STREAM (a small offset naming its use) on map INDEX of SEED.

    Map 0 draws from ``seed + stream``, as a one-map world always has, so its data never
    change; map i > 0 draws from the entropy ``[seed, i, stream + 1]``, which no one-map
    stream shares (numpy pads a shorter entropy with zeros, and i > 0).
    """
    if index == 0:
        return np.random.default_rng(seed + stream)
    return np.random.default_rng([seed, index, stream + 1])


@dataclass(frozen=True)
class WorldParams:
    """Everything that determines a world; equal params give an identical world."""

    seed: int = 0
    index: int = 0  # which map of a multi-map world; map 0 is drawn from the seed alone
    map_px: int = 1536
    metres_per_px: float = 0.5
    buildings_per_km2: float = 1900.0
    trees_per_km2: float = 5700.0
    roads: int = 18
    camera_height: float = 2.0
    max_range: float = 100.0
    ray_steps: int = 112
    elevation_top: float = 35.0
    elevation_bottom: float = -55.0


class World:
    """The generated map: per-pixel height (m), top colour, side colour and kind."""

    def __init__(self, params: WorldParams) -> None:
        self.params = params
        rng = map_rng(params.seed, params.index, WORLD_STREAM)
        n = params.map_px
        mpp = params.metres_per_px
        area_km2 = (n * mpp / 1000.0) ** 2
        # land cover: three classes from smooth noise, plus fine texture
        cells = -(-n // 64)  # enough 64-px cells to cover the map
        coarse = ndimage.zoom(rng.normal(size=(cells, cells)), 64, order=3)[:n, :n]
        land = np.digitize(coarse, np.quantile(coarse, [0.45, 0.8]))
        texture = ndimage.gaussian_filter(rng.normal(size=(n, n)), 1.5)[..., None] * 40
        top = LAND_COLOURS[land] + texture
        height = np.zeros((n, n), np.float32)
        side = np.zeros((n, n, 3), np.float32)
        blocked = np.zeros((n, n), bool)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        for _ in range(params.roads):
            p = rng.uniform(0, n, size=2)
            ang = rng.uniform(0, np.pi)
            width_px = rng.uniform(6, 11) / mpp
            dist = np.abs((yy - p[0]) * np.cos(ang) - (xx - p[1]) * np.sin(ang))
            road = dist < width_px / 2
            top[road] = ROAD_COLOUR + texture[road] * 0.3
            top[dist < 0.4 / mpp] = (230, 220, 120)  # centre line
            blocked |= dist < width_px / 2 + 2 / mpp
        for _ in range(int(params.buildings_per_km2 * area_km2)):
            h_px, w_px = rng.uniform(8, 30, size=2) / mpp
            r0, c0 = rng.uniform(0, n - 1, size=2)
            r1, c1 = int(r0), int(c0)
            r2, c2 = min(n, int(r0 + h_px)), min(n, int(c0 + w_px))
            if blocked[r1:r2, c1:c2].any():
                continue
            roof = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS))] + rng.normal(0, 12, 3)
            wall = WALL_COLOURS[rng.integers(len(WALL_COLOURS))] + rng.normal(0, 12, 3)
            top[r1:r2, c1:c2] = roof
            side[r1:r2, c1:c2] = wall
            height[r1:r2, c1:c2] = rng.uniform(4, 30)
            blocked[max(0, r1 - 4) : r2 + 4, max(0, c1 - 4) : c2 + 4] = True
        radius = rng.uniform(2, 5, size=int(params.trees_per_km2 * area_km2)) / mpp
        for rad in radius:
            r0, c0 = rng.uniform(0, n, size=2)
            r1, r2 = int(max(0, r0 - rad)), int(min(n, r0 + rad + 1))
            c1, c2 = int(max(0, c0 - rad)), int(min(n, c0 + rad + 1))
            disc = (yy[r1:r2, c1:c2] - r0) ** 2 + (xx[r1:r2, c1:c2] - c0) ** 2 < rad**2
            if not disc.any() or blocked[r1:r2, c1:c2][disc].any():
                continue
            shade = TREE_COLOUR * rng.uniform(0.7, 1.3)
            top[r1:r2, c1:c2][disc] = shade + texture[r1:r2, c1:c2][disc] * 0.8
            side[r1:r2, c1:c2][disc] = shade * 0.8
            height[r1:r2, c1:c2][disc] = rng.uniform(5, 15)
        self.height = height
        self.top = np.clip(top, 0, 255).astype(np.float32)
        self.side = np.clip(side, 0, 255).astype(np.float32)

    @property
    def size_metres(self) -> float:
        """Side of the square map in metres."""
        return self.params.map_px * self.params.metres_per_px

    def aerial(self, centres: np.ndarray, tile_metres: float, tile_px: int) -> np.ndarray:
        """North-up aerial crops (N, tile_px, tile_px, 3) uint8 centred on CENTRES (metres)."""
        mpp = self.params.metres_per_px
        offs = (np.arange(tile_px) + 0.5) / tile_px * tile_metres - tile_metres / 2
        out = np.empty((len(centres), tile_px, tile_px, 3), np.uint8)
        for i, (y, x) in enumerate(centres):
            rows = (y + offs) / mpp
            cols = (x + offs) / mpp
            rr, cc = np.meshgrid(rows, cols, indexing="ij")
            for ch in range(3):
                out[i, ..., ch] = np.clip(
                    ndimage.map_coordinates(self.top[..., ch], [rr, cc], order=1, mode="nearest"),
                    0,
                    255,
                )
        return out

    def panoramas(self, points: np.ndarray, height: int, width: int, batch: int = 16) -> np.ndarray:
        """Clean ray-cast panoramas (N, height, width, 3) float32, north at the centre column.

        BATCH points are cast together; each pixel's arithmetic is the same for any BATCH.
        """
        p = self.params
        n = p.map_px
        mpp = p.metres_per_px
        steps = p.ray_steps
        dist = torch.from_numpy(np.geomspace(0.6, p.max_range, steps).astype(np.float32))
        az = torch.pi + 2 * torch.pi * torch.arange(width, dtype=torch.float32) / width
        d_row, d_col = -torch.cos(az), torch.sin(az)  # clockwise from north; north = -row
        ray_row, ray_col = dist[None] * d_row[:, None], dist[None] * d_col[:, None]  # (W, K)
        elev = torch.deg2rad(
            torch.linspace(p.elevation_top, p.elevation_bottom, height + 1)[:-1]
            + (p.elevation_bottom - p.elevation_top) / height / 2
        )
        slope_rows = torch.tan(elev)  # (H,)
        hmap = torch.from_numpy(self.height).reshape(-1)
        # top colours then side colours: cell c + n * n is the side of cell c
        colours = torch.from_numpy(np.concatenate([self.top, self.side]).reshape(-1, 3))
        far = torch.from_numpy(LAND_COLOURS.mean(0) * 0.9 + 20)
        sky_t = (elev.clamp(min=0) / np.deg2rad(p.elevation_top))[None, :, None]
        sky = torch.tensor([200.0, 215, 235]) * (1 - sky_t) + torch.tensor([90.0, 140, 215]) * sky_t
        below = (elev < 0)[None, :, None]
        miss = torch.where(below, far.expand(width, height, 3), sky.expand(width, height, 3))
        yx = torch.from_numpy(np.asarray(points, dtype=np.float32).reshape(-1, 2))
        out = np.empty((len(yx), height, width, 3), np.float32)
        for start in range(0, len(yx), batch):
            y, x = yx[start : start + batch, :, None, None].unbind(1)  # (B, 1, 1) each
            b = len(y)
            ri = ((y + ray_row) / mpp).round().long().clamp(0, n - 1)  # (B, W, K)
            ci = ((x + ray_col) / mpp).round().long().clamp(0, n - 1)
            flat = ri * n + ci
            h = hmap.take(flat)
            slope = (h - p.camera_height) / dist
            reach = torch.cummax(slope, dim=2).values  # first k with slope_k >= tan(e)
            targets = slope_rows.expand(b, width, -1).contiguous()  # (B, W, H)
            k = torch.searchsorted(reach, targets)
            hit = k < steps
            kc = k.clamp(max=steps - 1)
            cell = torch.gather(flat, 2, kc)
            hk = torch.gather(h, 2, kc)
            dists = dist.expand(b, width, -1)
            prev = torch.gather(dists, 2, (kc - 1).clamp(min=0))
            ray_prev = p.camera_height + prev * targets
            on_side = (hk > 0) & (ray_prev < hk)
            colour = colours.index_select(0, (cell + on_side * (n * n)).reshape(-1))
            colour = colour.reshape(b, width, height, 3)
            fog = (torch.gather(dists, 2, kc) / p.max_range)[..., None]
            colour = colour * (1 - 0.5 * fog) + far * 0.5 * fog
            img = torch.where(hit[..., None], colour, miss)
            out[start : start + b] = img.permute(0, 2, 1, 3).numpy()
        return out
