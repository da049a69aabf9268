"""Exact retrieval against its floor (a bare GEMM of the same sizes) and a reference-style loop.

    python benchmarks/bench_retrieval.py                           # 2,000, 8,884, 20,000
    python benchmarks/bench_retrieval.py --scales 8884x4096 --rounds 5 --backends torch
    python benchmarks/bench_retrieval.py --scales 92802x1024 --rounds 1 --no-strategies
                                                   # CVACT_test size (minutes on 2 cores)

A scale NxD means N queries against N references of D dims: L2-normalised random
references, queries are noisy copies of their true match (--noise 0.05: every true match
ranks first; larger values move true matches out of the top-10, which the torch backend
then counts over their whole row). In one process, per scale, every round times:

  floor      torch GEMMs computing all N x N scores into one reused buffer, nothing else
  ours       benchmark.retrieval.search, torch backend (exact ranks, top-10), with the
             strategy it chooses itself (measured on first use, then cached per machine)
  workers    the same, forced to one single-threaded worker per thread
  shared     the same, forced to one multi-threaded product per chunk
  faiss      benchmark.retrieval.search, faiss backend (ranks below R@1%'s K, top-10)
  reference  the SAFA/TransGeo evaluation style: the whole distance matrix in numpy, then a
             Python loop over queries (skipped when the matrix exceeds --reference-max-gb)

The steps run in a rotating order each round, so drift in the machine's load touches all
of them; a ratio is taken within one round, and the range over rounds is printed with the
load average of each round. A step under a second is timed as its fastest run within about
a second of runs (at least 5, at most 50): on a shared machine a 20-ms step's single runs
vary by 50%, and the fastest of many is what the step costs when nothing interferes. The
process CPU time of each step (all threads' work, not the waits for a core; spinning
threads count) is printed as a ratio too: on a busy machine it varies less than wall time.
Before timing, ours runs once, so a first-use measurement of the strategy is not timed
(the line 'plan' says whether the choice was measured now or read from the cache). Steps
are timed with the allocator as users have it. The floor's buffer is allocated by its
first run and reused by the timed ones, so the floor is the arithmetic alone. The minor
page faults of each timed run are printed too: each is a page of fresh memory the kernel
maps and zeroes (glibc often hands a large block that a worker thread frees back to the
kernel, and the next search faults it in again). Peak memory is measured in a separate
process: the growth of its peak RSS (VmHWM, reset through /proc/self/clear_refs) over its
RSS before the step's first run, so it includes BLAS and faiss buffers (there blocks of 1
MiB and more are mapped, so one step's freed buffers cannot hide the next step's
allocations). --breakdown also measures, per chunk size, the CPU time of one product on
one thread and on all threads and of the post-processing of its scores on one thread:
where the time goes.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import math
import multiprocessing
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.io import cpu_model  # noqa: E402
from benchmark.metrics import one_percent_k  # noqa: E402
from benchmark.retrieval import (  # noqa: E402
    _block_shape,
    _chunk_results,
    faiss_available,
    search,
)
from benchmark.retrieval_plans import (  # noqa: E402
    STRATEGIES,
    machine_key,
    plan_cache_path,
    read_cache,
    size_key,
)

STATUS = Path("/proc/self/status")
QUICK_S = 1.0  # steps shorter than this are timed as their fastest run within QUICK_S of runs
MIN_RUNS, MAX_RUNS = 5, 50
GOAL = 1.2  # x the floor, at most
LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None
M_MMAP_THRESHOLD = -3  # glibc mallopt: blocks from this size up are mapped, and unmapped on free


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", STATUS.read_text()).group(1))


def peak_growth_mib(fn: Callable[[], object]) -> float | None:
    """Run FN once; the growth of the peak RSS over the RSS before, in MiB (None where
    Linux's counters are missing)."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)  # hand freed heap back, so this step's allocations show in RSS
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
        base = _status_kib("VmRSS")
    except OSError:
        base = None
    fn()
    return None if base is None else (_status_kib("VmHWM") - base) / 1024


def minor_faults() -> int:
    """This process's minor page faults so far: each is a fresh page mapped and zeroed."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn: Callable[[], object], cpu: bool = False) -> tuple[float, float, int]:
    """Wall and process CPU seconds and minor page faults of FN's fastest run (by wall
    time, or by CPU time with CPU): one run when it takes QUICK_S or more, else runs until
    QUICK_S has been spent (MIN_RUNS to MAX_RUNS). CPU time counts the work of every thread,
    not the waiting for a core."""
    best = (float("inf"), float("inf"), 0)
    spent, runs = 0.0, 0
    while runs < MIN_RUNS or (spent < QUICK_S and runs < MAX_RUNS):
        wall, used, faults = time.perf_counter(), time.process_time(), minor_faults()
        fn()
        run = (time.perf_counter() - wall, time.process_time() - used, minor_faults() - faults)
        best = min(best, run, key=lambda t: t[1] if cpu else t[0])
        spent, runs = spent + run[0], runs + 1
        if run[0] >= QUICK_S:
            break
    return best


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


class GemmFloor:
    """All Q x R scores by plain matrix products into one output buffer, allocated by the
    first call and reused by later ones. The peak-memory process sees that first call; the
    timing process makes it before timing, so the floor is the arithmetic alone, with none
    of the page faults of a fresh buffer."""

    def __init__(self, q: torch.Tensor, r: torch.Tensor, buffer_bytes: int) -> None:
        self.q, self.r = q, r
        self.rows = max(1, min(len(q), buffer_bytes // (len(r) * 4)))
        self.out: torch.Tensor | None = None

    def __call__(self) -> None:
        if self.out is None:
            self.out = torch.empty(self.rows, len(self.r))
        rt = self.r.T
        with torch.inference_mode():
            for s in range(0, len(self.q), self.rows):
                block = self.q[s : s + self.rows]
                torch.mm(block, rt, out=self.out[: len(block)])


def reference_style(q: np.ndarray, r: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """As the SAFA/TransGeo evaluation scripts: full distance matrix, loop over queries."""
    dist = 2.0 - 2.0 * (r @ q.T)  # references x queries
    ranks = np.empty(len(q), dtype=np.int64)
    for i in range(len(q)):
        gt = dist[positives[i], i]
        ranks[i] = np.sum(dist[:, i] < gt)
    return ranks


def breakdown(q: torch.Tensor, r: torch.Tensor, pos: np.ndarray) -> None:
    """Where the time goes, per whole problem, in CPU seconds (the work, not the waits for
    a core): one product of ROWS queries on one thread and on all threads, and the
    post-processing of its scores on one thread (fastest run, as timed())."""
    n, m = len(q), len(r)
    size, count = _block_shape(m, 10)
    threads = torch.get_num_threads()
    print("  where the time goes (CPU s per whole problem, fastest run):")
    all_threads = f"GEMM {threads} threads"
    print(f"  {'rows':>6s} {'GEMM 1 thread':>14s} {all_threads:>15s} {'post 1 thread':>14s}")
    for rows in (128, 256, 512, 1024, 2048):
        rows = min(rows, n)
        sim = torch.full((rows, size * count), -math.inf)
        scale = n / rows

        def gemm(sim: torch.Tensor = sim, rows: int = rows) -> None:
            torch.mm(q[:rows], r.T, out=sim[:, :m])

        gemm_all = timed(gemm, cpu=True)[1] * scale
        try:
            torch.set_num_threads(1)
            gemm_one = timed(gemm, cpu=True)[1] * scale
            post = timed(lambda s=sim, k=rows: _chunk_results(s, pos[:k], 10, size), cpu=True)[1]
        finally:
            torch.set_num_threads(threads)
        print(f"  {rows:6d} {gemm_one:14.3f} {gemm_all:15.3f} {post * scale:14.3f}")
        if rows == n:
            break


def machine_line() -> str:
    """CPU model, threads, BLAS, OPENBLAS_CORETYPE and load: what tells runs apart."""
    blas = "MKL" if torch.backends.mkl.is_available() else "other BLAS"
    one, five, _ = os.getloadavg()
    return (
        f"CPU {cpu_model()!r}, {os.cpu_count()} CPUs; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads ({blas}); numpy and faiss use OpenBLAS, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}; "
        f"load average {one:.2f} (1 min), {five:.2f} (5 min)"
    )


def _range(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def build_steps(
    n: int, d: int, args: argparse.Namespace
) -> tuple[dict[str, Callable[[], object]], np.ndarray, np.ndarray, np.ndarray]:
    """The steps timed at scale NxD, and the descriptors they search (queries, references,
    true matches)."""
    q_np, r_np, pos = descriptors(n, d, seed=0, noise=args.noise)
    q, r = torch.from_numpy(q_np), torch.from_numpy(r_np)
    memory = args.memory_mb * 2**20
    cap = one_percent_k(n)

    def ours(backend: str = "torch", strategy: str = "auto") -> Callable[[], object]:
        return lambda: search(q, r, pos, 10, cap, backend, memory, strategy)

    steps: dict[str, Callable[[], object]] = {"floor": GemmFloor(q, r, memory)}
    steps["ours"] = ours()
    if args.strategies:
        steps.update({name: ours(strategy=name) for name in STRATEGIES})
    if "faiss" in args.backends and faiss_available():
        steps["faiss"] = ours("faiss")
    if reference_gib(n) <= args.reference_max_gb:
        steps["reference"] = lambda: reference_style(q_np, r_np, pos)
    return steps, q_np, r_np, pos


def reference_gib(n: int) -> float:
    """Memory of the reference style's distance matrix and its 2 - 2x temporary."""
    return 2 * n * n * 4 / 2**30


def step_peaks(n: int, d: int, args: argparse.Namespace) -> dict[str, float | None]:
    """Peak memory of every step at NxD (run in a fresh process: its allocator maps blocks
    of 1 MiB and more, so one step's freed buffers cannot hide the next step's allocations,
    while the timing process keeps the allocator as users have it)."""
    if LIBC is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, 2**20)
    steps = build_steps(n, d, args)[0]
    return {name: peak_growth_mib(fn) for name, fn in steps.items()}


def bench_scale(n: int, d: int, args: argparse.Namespace) -> None:
    """Time every step over args.rounds rounds and print ranges, ratios and peak memory."""
    steps, q_np, r_np, pos = build_steps(n, d, args)
    memory = args.memory_mb * 2**20
    gflop = 2.0 * n * n * d / 1e9

    start = time.perf_counter()
    found = steps["ours"]()  # measures the strategy if this machine has not yet
    first_s = time.perf_counter() - start
    print(f"\n{n:,} x {n:,} x {d:,} ({gflop:,.0f} GFLOP), memory budget {args.memory_mb} MiB")
    print(f"  plan: {found.plan.describe()}; first call {first_s:.2f} s (not timed below)")
    trial = read_cache().get(machine_key(torch.get_num_threads()), {})
    seconds = trial.get(size_key(n, n, d, memory), {}).get("seconds", {})
    if seconds:
        best = min(seconds.values())
        relative = ", ".join(f"{name} {t / best:.2f}" for name, t in sorted(seconds.items()))
        print(f"  plan trial on this machine (x fastest): {relative}")
    top10 = float(np.mean(found.ranks < 10) * 100)
    print(f"  true match in the top-10 for {top10:.1f}% of queries (noise {args.noise})")
    if "reference" in steps:
        agree = float(np.mean(found.ranks == reference_style(q_np, r_np, pos)) * 100)
        print(f"  ours ranks equal reference-style ranks for {agree:.2f}% of queries")
    else:
        print(f"  reference skipped: it needs a {reference_gib(n):.1f} GiB distance matrix")

    with multiprocessing.get_context("spawn").Pool(1) as child:
        peaks = child.apply(step_peaks, (n, d, args))
    steps["floor"]()  # its buffer: a step of a second or more is timed by one run
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    faults: dict[str, list[int]] = {name: [] for name in steps}
    loads = []
    names = list(steps)
    for turn in range(args.rounds):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            wall, used, fresh = timed(steps[name])
            times[name].append(wall)
            cpu[name].append(used)
            faults[name].append(fresh)
        loads.append(os.getloadavg()[0])

    floor = times["floor"]
    head = f"{'step':20s} {'seconds':>13s}  {'x floor, per round':>22s}  {'CPU s x floor':>13s}"
    print(f"  {head}  {'page faults':>11s}  peak")
    for name in names:
        ratios = [t / f for t, f in zip(times[name], floor, strict=True)]
        cpu_x = np.median([c / f for c, f in zip(cpu[name], cpu["floor"], strict=True)])
        peak = "n/a" if peaks[name] is None else f"+{peaks[name]:,.0f} MiB"
        label = "floor (bare GEMM)" if name == "floor" else name
        print(
            f"  {label:20s} {_range(times[name], '.3f'):>13s}  "
            f"{_range(ratios, '.2f'):>12s} (med {np.median(ratios):.2f})  "
            f"{f'med {cpu_x:.2f}':>13s}  {_range(faults[name], ',d'):>11s}  {peak}"
        )
    print(f"  floor speed {_range([gflop / t for t in floor], '.0f')} GFLOP/s")
    ref = [t / o for t, o in zip(times.get("reference", []), times["ours"], strict=False)]
    if ref:
        print(f"  reference / ours per round: {_range(ref, '.2f')}")
    ours_x = [t / f for t, f in zip(times["ours"], floor, strict=True)]
    met = max(ours_x) <= GOAL and min(ref, default=1.0) >= 1.0
    print(
        f"  goal (ours <= {GOAL}x floor, never slower than reference) "
        f"{'met' if met else 'NOT met'} in every round"
    )
    print(f"  load average (1 min) after each round: {', '.join(f'{v:.2f}' for v in loads)}")
    if args.breakdown:
        breakdown(torch.from_numpy(q_np), torch.from_numpy(r_np), pos)


def main(argv: list[str] | None = None) -> None:
    """Run every requested scale and print what was measured."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="2000x512,8884x4096,20000x1024", help="NxD,NxD,...")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per scale")
    ap.add_argument("--memory-mb", type=int, default=512, help="retrieval memory budget (MiB)")
    ap.add_argument("--backends", default="torch", help="torch, or torch,faiss")
    ap.add_argument(
        "--no-strategies",
        dest="strategies",
        action="store_false",
        help="time only the chosen strategy, not each forced one",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time GEMM on one and all threads and the post-processing, per chunk size",
    )
    ap.add_argument("--reference-max-gb", type=float, default=4.0)
    ap.add_argument("--noise", type=float, default=0.05, help="query noise per dimension")
    args = ap.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    print(machine_line())
    print(f"strategy cache: {plan_cache_path()}")
    for scale in args.scales.split(","):
        n, d = (int(v) for v in scale.lower().split("x"))
        bench_scale(n, d, args)
    print(f"\nafter: {machine_line()}")


if __name__ == "__main__":
    main()
