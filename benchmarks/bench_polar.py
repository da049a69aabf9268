"""Polar transform: the precomputed sampling grid against per-pixel and per-image baselines.

    .venv/bin/python benchmarks/bench_polar.py [--size 750] [--height 128] [--width 512]

One process, one torch/BLAS thread, a random SIZE x SIZE aerial tile to HEIGHT x WIDTH:

  grid        benchmark.data.transforms.polar_transform (grid built once, cached)
  per-image   the same vectorised formula, but the grid rebuilt for every image
  per-pixel   SAFA's formula evaluated one output pixel at a time (tests/test_polar.py)

Prints images/s of each and the ratios; the goal is grid >= 10x per-pixel.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.data.transforms import polar_grid, polar_grid_on, polar_transform  # noqa: E402
from tests.test_polar import direct_polar  # noqa: E402

GOAL = 10.0


def per_second(fn: Callable[[], object], min_seconds: float) -> float:
    """Calls per second of FN, repeated for at least MIN_SECONDS."""
    fn()  # warm-up (and the grid cache for the cached variant)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls == 0:
        fn()
        calls += 1
    return calls / elapsed


def rebuilt_grid(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The polar transform with its sampling grid recomputed for this image."""
    polar_grid.cache_clear()
    polar_grid_on.cache_clear()
    return polar_transform(image, height, width)


def main(argv: list[str] | None = None) -> int:
    """Print images/s and ratios; exit 1 when grid / per-pixel misses the goal."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=750, help="aerial tile side (CVUSA: 750)")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum time per variant")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    h, w = args.height, args.width
    rates = {
        "grid": per_second(lambda: polar_transform(image, h, w), args.seconds),
        "per-image": per_second(lambda: rebuilt_grid(image, h, w), args.seconds),
        "per-pixel": per_second(lambda: direct_polar(image, h, w), args.seconds),
    }
    print(f"polar transform {args.size}x{args.size} -> {h}x{w}, one process, images/s:")
    for name, rate in rates.items():
        print(f"  {name:10s} {rate:10.2f}")
    pixel = rates["grid"] / rates["per-pixel"]
    print(f"  grid / per-pixel: {pixel:.1f}x (goal >= {GOAL:.0f}x)")
    print(f"  grid / per-image: {rates['grid'] / rates['per-image']:.1f}x")
    return 0 if pixel >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
