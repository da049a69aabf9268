"""Cost of the recipes' training augmentations against preparing the batch they act on.

    .venv/bin/python benchmarks/bench_augment.py [--batch 32] [--repeats 5]

For each augmentation at its paper's input sizes (CVM-Net: 512x512 aerial tiles; SAIG's
polar variant: 128x512 ground and aerial), one process times (a) building a batch of model
inputs from raw synthetic images with the model's InputPipeline (the loader's per-sample
work: resize or polar transform and normalisation) and (b) the batched augmentation of that
batch. Both alternate and the fastest of each is kept, so drift in machine load touches
both. Prints milliseconds per batch and augmentation / preparation.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.data.augment import Augmenter, build_augmenter  # noqa: E402
from benchmark.data.base import SourceGeometry  # noqa: E402
from benchmark.data.transforms import InputPipeline  # noqa: E402
from benchmark.specs import Preprocess  # noqa: E402

CASES = {
    "aerial-crop-rotate": Preprocess((224, 1232), (512, 512), polar=False),
    "circular-shift": Preprocess((128, 512), (128, 512), polar=True),
}


def fastest(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of REPEATS timed calls of FN, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def augment_call(batch: dict[str, torch.Tensor], augment: Augmenter) -> Callable[[], None]:
    """A call of AUGMENT on a copy of BATCH, at a new step (a new draw) each time."""
    steps = itertools.count()
    return lambda: augment(dict(batch), epoch=0, step=next(steps))


def main(argv: list[str] | None = None) -> int:
    """Print per-batch times and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    panoramas = rng.integers(0, 256, (args.batch, 224, 1232, 3), dtype=np.uint8)
    tiles = rng.integers(0, 256, (args.batch, 750, 750, 3), dtype=np.uint8)
    print(f"batch {args.batch}, {torch.get_num_threads()} torch threads")
    for name, pre in CASES.items():
        pipeline = InputPipeline(pre, SourceGeometry())

        def prepare(p: InputPipeline = pipeline) -> dict[str, torch.Tensor]:
            return {
                "ground": torch.stack([p.ground(x) for x in panoramas]),
                "aerial": torch.stack([p.aerial(x) for x in tiles]),
                "index": torch.arange(args.batch),
            }

        batch = prepare()

        run = augment_call(batch, build_augmenter([name], pre, False, seed=0))
        prep = aug = float("inf")
        for _ in range(2):
            prep = min(prep, fastest(prepare, args.repeats))
            aug = min(aug, fastest(run, args.repeats))
        print(f"{name:20s} prepare {prep:8.1f} ms  augment {aug:7.1f} ms  ratio {aug / prep:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
