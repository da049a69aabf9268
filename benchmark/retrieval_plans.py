"""How exact CPU retrieval splits its work, chosen by measurement and remembered per machine.

Two strategies compute the same scores and results:

  workers  W workers, each running products of up to CHUNK_ROWS queries on threads / W
           threads and post-processing its own chunks (the workers never wait on each
           other). The plans range from one single-threaded worker per thread (suits CPUs
           whose single-threaded GEMM is as fast per core) to two workers of half the
           threads each (fewer, larger products: on many cores, fewer re-reads of the
           references and fewer workers to keep busy on a small search)
  shared   one product of up to SHARED_ROWS queries using every thread, then the
           post-processing of its rows split over the threads (suits CPUs where the
           threads of one GEMM share cache better than independent GEMMs do)

Which is fastest depends on the CPU, its cores, caches and BLAS, and the sizes. The first
search at a size bucket on a machine times every plan on the same queries (alternating,
the fastest sample of each kept) and caches the choice in
``<cache>/retrieval-plans.json``, keyed by CPU model, torch threads, torch version and
BLAS, and the sizes rounded to powers of two; later searches read it. A choice measured
while the load average exceeded the CPU count is provisional and measured again on a
quieter first call. Delete the file to measure again.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from benchmark.io import atomic_write, cache_root, cpu_model

STRATEGIES = ("workers", "shared")
CHUNK_ROWS = 1024  # queries per single-threaded product at most (512 cost 6% more at 4,096-d)
SHARED_ROWS = 2048  # queries per multi-threaded product at most
MIN_WORKER_ROWS = 128  # fewer queries per product would re-read the references too often
BYTES_PER_SCORE = 12  # a score, and room for the post-processing's copies of a chunk
TRIAL_MIN_GFLOP = 0.5  # smaller searches take the default: a trial would cost more than it saves
TRIAL_SECONDS = 0.2  # each strategy is timed until its samples add up to this (or MAX_SAMPLES)
MAX_SAMPLES = 6
LONG_SAMPLE_S = 0.5  # one sample each suffices when a sample takes this long
CACHE_VERSION = 2


@dataclass(frozen=True)
class CpuPlan:
    """One way to run the search: STRATEGY, queries per product, how many products run at
    once (WORKERS; 1 for shared) and the THREADS used in all.

    ``source`` says how it was chosen: 'measured' (timed now), 'cached' (timed by an
    earlier search on this machine), 'default' (too small to time) or 'forced'.
    """

    strategy: str
    rows: int
    workers: int
    threads: int
    source: str = "forced"

    @property
    def name(self) -> str:
        """What the cache calls it: the strategy, and for workers how many run at once."""
        return self.strategy if self.strategy == "shared" else f"workers x{self.workers}"

    def describe(self) -> str:
        """One line for logs and benchmark output."""
        if self.strategy == "shared":
            how = f"{self.rows} rows x {self.threads} threads"
        else:
            each = max(1, self.threads // self.workers)
            how = f"{self.workers} x {self.rows} rows, {each} thread{'s' * (each > 1)} each"
        return f"{self.strategy} ({how}, {self.source})"


def torch_chunk_rows(num_refs: int, memory_bytes: int, workers: int = 1) -> int:
    """Queries per matrix product: every worker's chunk of scores and its working copies fit."""
    return max(1, memory_bytes // max(1, workers * num_refs * BYTES_PER_SCORE))


def even_rows(n: int, most: int, parts: int = 1) -> int:
    """Rows per chunk, at most MOST, splitting N into a multiple of PARTS equal chunks (so
    PARTS workers finish together instead of one waiting on a last short chunk)."""
    chunks = -(-n // max(1, most))
    return -(-n // (-(-chunks // parts) * parts))


def candidate_plans(n: int, width: int, memory_bytes: int, threads: int) -> dict[str, CpuPlan]:
    """Every plan for N queries against WIDTH (padded) references within MEMORY_BYTES on
    THREADS threads, by name: workers, as many as the threads and the memory allow, then
    half as many (with twice the threads each) down to two; and shared. The first is the
    one that `strategy='workers'` forces."""
    counts = [max(1, min(threads, memory_bytes // (width * BYTES_PER_SCORE * MIN_WORKER_ROWS)))]
    while counts[-1] // 2 >= 2:
        counts.append(counts[-1] // 2)
    plans = {}
    for count in counts:
        rows = even_rows(n, min(CHUNK_ROWS, torch_chunk_rows(width, memory_bytes, count)), count)
        plan = CpuPlan("workers", rows, min(count, -(-n // rows)), threads)
        plans.setdefault(plan.name, plan)
    shared = even_rows(n, min(SHARED_ROWS, torch_chunk_rows(width, memory_bytes)))
    plans["shared"] = CpuPlan("shared", shared, 1, threads)
    return plans


def machine_key(threads: int) -> str:
    """What makes the timing of one machine differ from another's."""
    blas = "MKL" if torch.backends.mkl.is_available() else "other BLAS"
    return f"{cpu_model()} | {threads} threads | torch {torch.__version__} {blas}"


def size_key(n: int, m: int, d: int, memory_bytes: int) -> str:
    """Queries, references, dimensions and memory budget, each rounded to a power of two."""
    parts = zip("nmd", (n, m, d), strict=True)
    sizes = " ".join(f"{name}~2^{round(math.log2(max(1, v)))}" for name, v in parts)
    return f"{sizes} mem~2^{round(math.log2(max(1, memory_bytes)))}"


def plan_cache_path() -> Path:
    """The per-machine file of measured choices."""
    return cache_root() / "retrieval-plans.json"


def read_cache() -> dict:
    """The cached choices ({machine: {sizes: entry}}); empty if absent or unreadable."""
    try:
        data = json.loads(plan_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    plans = data.get("plans")
    return plans if isinstance(plans, dict) else {}


def load_average() -> float | None:
    """The 1-minute load average, where the system reports one."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def busy() -> bool:
    """True while other work keeps every CPU busy (load average above the CPU count)."""
    load = load_average()
    return load is not None and load > (os.cpu_count() or 1)


def cached_plan(machine: str, sizes: str) -> str | None:
    """The name of the plan measured earlier for MACHINE and SIZES, or None. A choice
    measured while the machine was busy is provisional: it is measured again once it is not."""
    entries = read_cache().get(machine)
    entry = entries.get(sizes) if isinstance(entries, dict) else None
    if not isinstance(entry, dict) or (entry.get("busy") and not busy()):
        return None
    name = entry.get("plan")
    return name if isinstance(name, str) else None


def remember(machine: str, sizes: str, name: str, seconds: dict[str, float]) -> None:
    """Add one measured choice to the cache; a cache that cannot be written only warns."""
    plans = read_cache()
    if not isinstance(plans.get(machine), dict):
        plans[machine] = {}
    load = load_average()
    plans[machine][sizes] = {
        "plan": name,
        "seconds": {plan: round(s, 6) for plan, s in seconds.items()},
        "load_average": None if load is None else round(load, 2),
        "busy": busy(),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        with atomic_write(plan_cache_path(), "w") as fh:
            json.dump({"version": CACHE_VERSION, "plans": plans}, fh, indent=1, sort_keys=True)
    except OSError as exc:
        warnings.warn(
            f"Could not cache the retrieval plan in {plan_cache_path()} ({exc.strerror}); "
            "the next search will measure again.",
            stacklevel=2,
        )


Runner = Callable[[CpuPlan, int, int], None]  # run(plan, start, stop): queries start..stop


def probe_rows(plans: dict[str, CpuPlan], n: int) -> int:
    """Queries a trial times: enough for one chunk of every worker of every plan."""
    return min(n, max(p.rows * p.workers for p in plans.values()))


def measure(plans: dict[str, CpuPlan], run: Runner, probe: int) -> tuple[str, dict[str, float]]:
    """Time every plan on the first PROBE queries, alternating (A B C C B A ...); return the
    fastest by its best sample and every plan's best. The winner ran those queries last."""
    names = list(plans)
    samples: dict[str, list[float]] = {name: [] for name in names}
    last = ""
    for turn in range(MAX_SAMPLES):
        for name in names if turn % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            run(plans[name], 0, probe)
            samples[name].append(time.perf_counter() - start)
            last = name
        spent = min(sum(s) for s in samples.values())
        if spent >= TRIAL_SECONDS or min(min(s) for s in samples.values()) >= LONG_SAMPLE_S:
            break
    best = {name: min(s) for name, s in samples.items()}
    winner = min(names, key=best.__getitem__)
    if last != winner:
        run(plans[winner], 0, probe)
    return winner, best


def choose(
    plans: dict[str, CpuPlan],
    run: Runner,
    sizes: tuple[int, int, int],
    memory_bytes: int,
    threads: int,
    strategy: str = "auto",
) -> tuple[CpuPlan, int]:
    """The plan for a search of SIZES = (queries, references, dims), and how many leading
    queries it has already answered (a measurement's last run). STRATEGY 'auto' reads the
    cache or measures; a strategy name forces it."""
    if strategy not in ("auto", *STRATEGIES):
        raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, not {strategy!r}")
    most_workers = next(iter(plans.values()))
    if strategy != "auto":
        forced = most_workers if strategy == "workers" else plans[strategy]
        return replace(forced, source="forced"), 0
    n, m, d = sizes
    if 2.0 * n * m * d / 1e9 < TRIAL_MIN_GFLOP:
        return replace(most_workers, source="default"), 0
    machine, bucket = machine_key(threads), size_key(n, m, d, memory_bytes)
    cached = cached_plan(machine, bucket)
    if cached in plans:  # a plan these sizes no longer offer is measured again
        return replace(plans[cached], source="cached"), 0
    probe = probe_rows(plans, n)
    winner, best = measure(plans, run, probe)
    remember(machine, bucket, winner, best)
    return replace(plans[winner], source="measured"), probe
