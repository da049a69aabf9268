"""Exact retrieval against its floor (a bare GEMM of the same sizes) and a reference-style loop.

    python benchmarks/bench_retrieval.py                           # 2,000 and 8,884 (minutes)
    python benchmarks/bench_retrieval.py --scales 92802x1024 --backends torch --floor-once
                                                   # CVACT_test size (3-6 min on 2 cores)

A scale NxD means N queries against N references of D dims: L2-normalised random
references, queries are noisy copies of their true match (--noise 0.05: every true match
ranks first; larger values move true matches out of the top-10, which the torch backend
then counts over their whole row). In one process, per scale:

  floor      torch GEMMs computing all N x N scores into one reused buffer, nothing else;
             timed before and after the others, the faster kept (--floor-once: before)
  faiss      benchmark.retrieval.search, faiss backend (ranks below R@1%'s K, top-10)
  torch      benchmark.retrieval.search, torch backend (exact ranks, top-10)
  reference  the SAFA/TransGeo evaluation style: the whole distance matrix in numpy, then a
             Python loop over queries (skipped when the matrix exceeds --reference-max-gb)

A step that takes under a second is run 5 times and its fastest run kept (one run of a
few tens of milliseconds swings by +-20% on a shared machine). Peak memory is the growth of
the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over its RSS before
the step's first run, so it includes BLAS and faiss buffers.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmark.metrics import one_percent_k
from benchmark.retrieval import search

STATUS = Path("/proc/self/status")
QUICK_S = 1.0  # steps shorter than this are timed as the fastest of 5 runs
LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", STATUS.read_text()).group(1))


def measure(fn: Callable[[], object]) -> tuple[float, float | None, object]:
    """Seconds (fastest of 5 runs if one is under QUICK_S), peak RSS growth in MiB of the
    first run (None where Linux's counters are missing), result."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)  # hand freed heap back, so this step's allocations show in RSS
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
        base = _status_kib("VmRSS")
    except OSError:
        base = None
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = None if base is None else (_status_kib("VmHWM") - base) / 1024
    for _ in range(4 if seconds < QUICK_S else 0):
        start = time.perf_counter()
        fn()
        seconds = min(seconds, time.perf_counter() - start)
    return seconds, peak, out


def descriptors(
    n: int, d: int, seed: int, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(queries, references, true match per query), float32, unit norm."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((n, d), dtype=np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    queries = refs + rng.standard_normal((n, d), dtype=np.float32) * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, refs, np.arange(n)


def gemm_floor(q: torch.Tensor, r: torch.Tensor, buffer_bytes: int) -> None:
    """All Q x R scores by plain matrix products into a reused output buffer."""
    rows = max(1, min(len(q), buffer_bytes // (len(r) * 4)))
    out = torch.empty(rows, len(r))
    rt = r.T
    with torch.inference_mode():
        for s in range(0, len(q), rows):
            block = q[s : s + rows]
            torch.mm(block, rt, out=out[: len(block)])


def reference_style(q: np.ndarray, r: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """As the SAFA/TransGeo evaluation scripts: full distance matrix, loop over queries."""
    dist = 2.0 - 2.0 * (r @ q.T)  # references x queries
    ranks = np.empty(len(q), dtype=np.int64)
    for i in range(len(q)):
        gt = dist[positives[i], i]
        ranks[i] = np.sum(dist[:, i] < gt)
    return ranks


def bench_scale(n: int, d: int, args: argparse.Namespace) -> None:
    """Print one block of timings, peak memory and ratios for N x N x D."""
    q_np, r_np, pos = descriptors(n, d, seed=0, noise=args.noise)
    q, r = torch.from_numpy(q_np), torch.from_numpy(r_np)
    memory = args.memory_mb * 2**20
    gflop = 2.0 * n * n * d / 1e9
    rows: list[tuple[str, float, float | None]] = []
    floor_a, floor_mem, _ = measure(lambda: gemm_floor(q, r, memory))
    found = {}
    for backend in args.backends:
        t, mem, out = measure(
            lambda b=backend: search(q, r, pos, 10, one_percent_k(n), b, memory_bytes=memory)
        )
        rows.append((backend, t, mem))
        found[backend] = out
    floor = floor_a
    if args.floor_twice:
        floor = min(floor, measure(lambda: gemm_floor(q, r, memory))[0])
    ref_gb = 2 * n * n * 4 / 2**30  # the matrix and its 2 - 2x temporary
    if ref_gb <= args.reference_max_gb:
        t, mem, ref_ranks = measure(lambda: reference_style(q_np, r_np, pos))
        rows.append(("reference", t, mem))
        exact = found.get("torch")
        if exact is not None:
            agree = float(np.mean(exact.ranks == ref_ranks) * 100)
            print(f"  torch ranks equal reference-style ranks for {agree:.2f}% of queries")
    else:
        print(f"  reference skipped: it needs a {ref_gb:.1f} GiB distance matrix")
    print(f"\n{n:,} x {n:,} x {d:,} ({gflop:,.0f} GFLOP), memory budget {args.memory_mb} MiB")
    if "torch" in found:
        top10 = float(np.mean(found["torch"].ranks < 10) * 100)
        print(f"  true match in the top-10 for {top10:.1f}% of queries (noise {args.noise})")
    print(
        f"  {'floor (bare GEMM)':20s} {floor:9.2f} s  {gflop / floor:7.1f} GFLOP/s"
        f"  peak +{floor_mem or 0:,.0f} MiB"
    )
    ours = {name: t for name, t, _ in rows if name != "reference"}
    for name, t, mem in rows:
        peak = "n/a" if mem is None else f"+{mem:,.0f} MiB"
        print(f"  {name:20s} {t:9.2f} s  {t / floor:6.2f}x floor  peak {peak}")
    if "reference" in {name for name, _, _ in rows}:
        ref_t = next(t for name, t, _ in rows if name == "reference")
        for name, t in ours.items():
            print(f"  reference / {name}: {ref_t / t:.2f}x")


def main(argv: list[str] | None = None) -> None:
    """Run every requested scale and print what was measured."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="2000x512,8884x4096", help="NxD,NxD,...")
    ap.add_argument("--memory-mb", type=int, default=512, help="retrieval memory budget (MiB)")
    ap.add_argument("--backends", default="faiss,torch", help="faiss,torch or one of them")
    ap.add_argument("--reference-max-gb", type=float, default=4.0)
    ap.add_argument("--noise", type=float, default=0.05, help="query noise per dimension")
    ap.add_argument(
        "--floor-once",
        dest="floor_twice",
        action="store_false",
        help="time the floor only before the others (saves minutes at CVACT_test size)",
    )
    args = ap.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, BLAS "
        f"{'MKL' if torch.backends.mkl.is_available() else 'other'}); numpy and faiss use "
        f"OpenBLAS; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for scale in args.scales.split(","):
        n, d = (int(v) for v in scale.lower().split("x"))
        bench_scale(n, d, args)


if __name__ == "__main__":
    main()
