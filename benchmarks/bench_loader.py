"""Data path throughput per worker: raw JPEGs against the bare decode floor, and the model-input
cache against a bare copy of the same bytes.

Writes natural-looking images (1/f noise textures, JPEG quality 90) at the file sizes of
CVUSA (panorama 1232x224, aerial 750x750 JPEG), CVACT (1664x832, 1200x1200 JPEG) and VIGOR
(2048x1024 JPEG, aerial 640x640 PNG, as distributed), then times, in one process with one
torch thread (what one DataLoader worker does), in CPU seconds of that process (on a shared
machine, wall-clock time mostly measures the other processes):

  floor   the bare decode of the same files at the size the worker decodes them (PIL open,
          draft, load; nothing else)
  worker  ViewSource.fetch: the harness worker's whole job (decode at reduced size, or at
          full size by libjpeg-turbo straight into an array, checks, conversion to an RGB
          array, stacking into a batch); resize, polar transform and normalisation run
          later, batched, on the model's device
  before  the previous design's worker: full-size decode, then resize/polar on the CPU

It also reports the mean absolute difference (grey levels, 0-255) between model inputs from
the reduced decode and from the full decode (both shaped by the same stated resize or polar
sampling), and the model-input cache's pairs/s per worker against copying the same rows of
the same memmaps into preallocated buffers (a bare memory copy, one memcpy per image). With
--profile FILE (``python -m benchmark profile --plugins all --format json``) it adds, for
each method at its paper configuration, the pairs/s that keep an accelerator busy and the
workers each path needs.

    .venv/bin/python benchmarks/bench_loader.py
    .venv/bin/python benchmarks/bench_loader.py --profile profile.json --tflops 989 --mfu 0.4
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.config import model_options, resolve  # noqa: E402
from benchmark.data.base import CrossViewSplit, SourceGeometry  # noqa: E402
from benchmark.data.images import ImageReader, LoadOptions, read_image  # noqa: E402
from benchmark.data.loader import PairDataset  # noqa: E402
from benchmark.data.sources import view_source  # noqa: E402
from benchmark.data.transforms import InputPipeline  # noqa: E402
from benchmark.io import cpu_model  # noqa: E402
from benchmark.registry import registry  # noqa: E402
from benchmark.specs import Preprocess  # noqa: E402

# (panorama (h, w), aerial side, aerial format, kept panorama rows) as distributed
DATASETS = {
    "cvusa": ((224, 1232), 750, "jpg", (0.0, 1.0)),
    "cvact": ((832, 1664), 1200, "jpg", (0.25, 0.75)),
    "vigor": ((1024, 2048), 640, "png", (0.0, 1.0)),
}
PAPER_DATASET = {"vigor": "vigor"}  # the others are trained and compared on CVUSA
BATCH = 8
Files = tuple[tuple[str, tuple[Path, ...]], ...]  # ((view, paths), ...): hashable


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A natural-looking uint8 RGB image: 1/f amplitude spectrum, correlated channels."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    channels = []
    shared = rng.uniform(0, 2 * np.pi, amplitude.shape)
    for _ in range(3):
        phase = shared + 0.6 * rng.standard_normal(amplitude.shape)
        channels.append(np.fft.irfft2(amplitude * np.exp(1j * phase), s=(h, w)))
    image = np.stack(channels, axis=-1)
    image = (image - image.mean()) / image.std() * 48 + 118
    return np.clip(image, 0, 255).astype(np.uint8)


def write_files(folder: Path, name: str, n: int, rng: np.random.Generator) -> Files:
    """N panoramas and N aerial images of dataset NAME's sizes and formats under FOLDER."""
    (gh, gw), side, fmt, _ = DATASETS[name]
    paths: dict[str, list] = {"ground": [], "aerial": []}
    for k in range(n):
        for view, (h, w), ext in (("ground", (gh, gw), "jpg"), ("aerial", (side, side), fmt)):
            path = folder / name / view / f"{k:04d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"quality": 90} if ext == "jpg" else {}
            Image.fromarray(texture(h, w, rng)).save(path, **kwargs)
            paths[view].append(path)
    return tuple((view, tuple(files)) for view, files in paths.items())


def paper_preprocess(method: str) -> Preprocess:
    """The input sizes and polar choice of METHOD's paper configuration."""
    spec = registry().model(method)
    opts = model_options(spec, resolve(spec, {}, quick=False))
    return Preprocess(tuple(opts.ground_size), tuple(opts.aerial_size), opts.polar)


def bare_decode(path: Path, least: tuple[int, int] | None) -> None:
    """The floor: decode PATH at reduced size (at least LEAST; None: full size), nothing else."""
    with Image.open(path) as im:
        if least is not None:
            im.draft(None, (least[1], least[0]))
        im.load()


def best_rate(tasks: dict[str, Callable[[], object]], count: int, repeats: int) -> dict[str, float]:
    """Items per CPU second of each task (COUNT items per call; user + system time of this
    one-threaded process: what a worker does on a core of its own), best of REPEATS
    interleaved passes."""
    best = dict.fromkeys(tasks, math.inf)
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.process_time()
            task()
            best[name] = min(best[name], time.process_time() - start)
    return {name: count / seconds for name, seconds in best.items()}


def split_of(paths: dict[str, list], options: LoadOptions, label: str) -> CrossViewSplit:
    """A split pairing ground k with aerial k, read through the harness's readers."""
    n = len(paths["ground"])
    return CrossViewSplit(
        name=label,
        load_ground=ImageReader(paths["ground"], "ground", options, label),
        load_aerial=ImageReader(paths["aerial"], "aerial", options, label),
        num_ground=n,
        num_aerial=n,
        positives=np.arange(n),
    )


@functools.cache
def decode_rates(
    name: str, pre: Preprocess, paths: Files, repeats: int
) -> dict[str, dict[str, float]]:
    """Per view of dataset NAME's PATHS under PRE: floor, worker and previous-design rates
    (images per CPU second) and the MAD (measured once per input configuration)."""
    pipeline = InputPipeline(pre, SourceGeometry(DATASETS[name][3]))
    paths = {view: list(files) for view, files in paths}
    split = split_of(paths, LoadOptions(), "bench")
    out = {}
    for view in ("ground", "aerial"):
        files = paths[view]
        source = view_source(split, view, pipeline)
        least = pipeline.source_size(view)
        one = pipeline.ground if view == "ground" else pipeline.aerial
        batches = [list(range(k, min(len(files), k + BATCH))) for k in range(0, len(files), BATCH)]
        rates = best_rate(
            {
                "floor": lambda f=files, s=least: [bare_decode(p, s) for p in f],
                "worker": lambda b=batches, s=source: [s.fetch(ix, pipeline) for ix in b],
                "before": lambda f=files, t=one: [t(read_image(p)) for p in f],
            },
            len(files),
            repeats,
        )
        reduced = pipeline.shape(view, source.fetch(range(len(files)), pipeline))
        full = pipeline.shape(view, torch.stack([torch.from_numpy(read_image(p)) for p in files]))
        rates["mad"] = float((reduced - full).abs().mean())
        rates["decoded"] = tuple(source.fetch([0], pipeline).shape[1:3])
        if least is None and str(files[0]).endswith(".jpg"):  # what a polar prefilter costs
            h, w = pipeline.size(view)
            side = max(2 * h, math.ceil(w / math.pi))  # the radial/outer-ring sample spacing
            halved = torch.stack([torch.from_numpy(read_image(p, (side, side))) for p in files])
            rates["mad_reduced"] = float((pipeline.shape(view, halved) - full).abs().mean())
            rates["reduced_to"] = tuple(halved.shape[1:3])
        out[view] = rates
    return out


def cache_rates(
    paths: dict[str, list], pipeline: InputPipeline, pairs: int, folder: Path, repeats: int
) -> dict[str, float]:
    """Pairs/s of a worker reading the model-input cache, and of a bare copy of its rows."""
    cycle = {v: [paths[v][k % len(paths[v])] for k in range(pairs)] for v in paths}
    options = LoadOptions(cache="model-input", cache_dir=str(folder))
    start = time.perf_counter()
    data = PairDataset(split_of(cycle, options, "bench"), pipeline)
    built = time.perf_counter() - start
    arrays = [np.load(s.read.path, mmap_mode="r") for s in (data.ground, data.aerial)]
    order = np.random.default_rng(0).permutation(pairs)
    batches = [order[k : k + 32] for k in range(0, pairs - 31, 32)]
    buffers = [np.empty((32, *a.shape[1:]), np.uint8) for a in arrays]

    def copy() -> None:
        for b in batches:
            for a, buf in zip(arrays, buffers, strict=True):
                for k, i in enumerate(b):
                    buf[k] = a[i]

    count = 32 * len(batches)
    rates = best_rate(
        {"memcpy": copy, "worker": lambda: [data.__getitems__(b.tolist()) for b in batches]},
        count,
        repeats,
    )
    rates["built_s"] = built
    rates["mb_per_pair"] = sum(a[0].nbytes for a in arrays) / 1e6
    return rates


def main() -> None:
    """Write the files, time each path, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="files per view and dataset")
    parser.add_argument("--repeats", type=int, default=3, help="passes per path (best kept)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--cache-pairs", type=int, default=2048, help="pairs in the cache test (0.8 GB: beyond L3)"
    )
    parser.add_argument("--profile", type=Path, help="JSON of `benchmark profile --format json`")
    parser.add_argument("--tflops", type=float, default=989.0, help="dense bf16 TFLOP/s (H100)")
    parser.add_argument("--mfu", type=float, default=0.4, help="realistic share of --tflops")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(
        f"CPU {cpu_model()}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (start), one torch thread, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: write_files(Path(tmp), name, args.n, rng) for name in args.datasets}
        print(
            "\nraw files, per worker (images/s); model inputs (width x height) of the paper "
            "configuration of SAFA (CVUSA, CVACT: polar aerial) and VIGOR (VIGOR)"
        )
        print(
            f"{'dataset':7} {'view':6} {'input':>8} {'decoded':>10} {'floor':>7} {'worker':>7} "
            f"{'/floor':>6} {'before':>7} {'MAD':>5}"
        )
        notes: list[str] = []
        for name in args.datasets:
            pre = paper_preprocess("vigor" if name == "vigor" else "safa")
            rates = decode_rates(name, pre, files[name], args.repeats)
            for view, r in rates.items():
                size = "x".join(str(v) for v in r["decoded"][::-1])
                shape = pre.ground_size if view == "ground" else pre.aerial_size
                target = "x".join(str(v) for v in shape[::-1])
                print(
                    f"{name:7} {view:6} {target:>8} {size:>10} {r['floor']:7.1f} "
                    f"{r['worker']:7.1f} {r['worker'] / r['floor']:5.2f}x {r['before']:7.1f} "
                    f"{r['mad']:5.2f}"
                )
                if "mad_reduced" in r:
                    to = "x".join(str(v) for v in r["reduced_to"][::-1])
                    notes.append(
                        f"{name} {view}: decoding the polar tiles at {to} instead "
                        f"would change the polar images by {r['mad_reduced']:.2f} levels"
                    )
        for note in notes:
            print(f"  ({note})")
        pipeline = InputPipeline(Preprocess((128, 512), (128, 512), True), SourceGeometry())
        cache = cache_rates(
            dict(files[args.datasets[0]]),
            pipeline,
            args.cache_pairs,
            Path(tmp) / "cache",
            args.repeats,
        )
        print(
            f"\nmodel-input cache at 128x512 ({cache['mb_per_pair']:.2f} MB a pair, "
            f"{args.cache_pairs} pairs built in {cache['built_s']:.1f} s), per worker:"
        )
        print(
            f"  bare copy of the same rows {cache['memcpy']:9.0f} pairs/s; worker "
            f"{cache['worker']:9.0f} pairs/s = {cache['worker'] / cache['memcpy']:.2f}x "
            f"(goal >= 5,000 pairs/s)"
        )
        if args.profile:
            gpu_table(args, cache["worker"] * cache["mb_per_pair"], files)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def gpu_table(
    args: argparse.Namespace,
    cache_mb_per_s: float,
    files: dict[str, dict[str, list]],
) -> None:
    """Pairs/s that keep the stated accelerator busy, and workers per data path (the cache's
    rate scaled from 128x512 by the bytes of each method's pair: it is a memory copy)."""
    profile = {row["plugin"]: row for row in json.loads(args.profile.read_text())}
    flops = args.tflops * 1e12 * args.mfu
    print(
        f"\nto keep {args.tflops:.0f} TFLOP/s x {args.mfu:.0%} busy (training step = 3x "
        "forward = 6 FLOP per MAC):"
    )
    print(
        "| method | input (ground / aerial) | GMACs/pair | pairs/s needed | JPEG pairs/s/worker "
        "| JPEG workers | cache pairs/s/worker | cache workers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method in ("cvm-net", "safa", "l2ltr", "saig", "aenet", "vigor"):
        dataset = PAPER_DATASET.get(method, "cvusa")
        if method not in profile or dataset not in files:
            continue
        gmacs = profile[method]["gmacs"]
        need = flops / (6 * gmacs * 1e9)
        pre = paper_preprocess(method)
        rates = decode_rates(dataset, pre, files[dataset], args.repeats)
        jpeg = 1 / sum(1 / r["worker"] for r in rates.values())
        (gh, gw), (ah, aw) = pre.ground_size, pre.aerial_size
        size = f"{gh}x{gw} / {ah}x{aw}{' polar' if pre.polar else ''} ({dataset})"
        cache = cache_mb_per_s / (3 * (gh * gw + ah * aw) / 1e6)
        print(
            f"| {method} | {size} | {gmacs:.1f} | {need:,.0f} | {jpeg:.0f} | "
            f"{math.ceil(need / jpeg)} | {cache:,.0f} | {math.ceil(need / cache)} |"
        )


if __name__ == "__main__":
    main()
