"""Nearest-neighbour retrieval: rank of the true match and top-k lists, never N x N in memory.

Two exact backends: chunked torch matrix products (the default; CPU or CUDA, exact ranks)
and faiss (inner product on L2-normalised descriptors, GPU index when CUDA and faiss-gpu
are present; ranks exact below its search depth). Both work in query chunks sized by a
memory budget: memory is the descriptors, the chunks in flight and N x k results, never N x N.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write
from benchmark.retrieval_plans import CpuPlan, candidate_plans, choose, torch_chunk_rows

DEFAULT_MEMORY_BYTES = 512 * 2**20
FAISS_BLOCK_REFS = 1024  # faiss scores queries against references in blocks of this many


@dataclass
class Retrieval:
    """Per query: rank of the true match, top-k reference ids and scores (best first).

    ``rank_cap`` is None when ranks are exact; otherwise ranks >= rank_cap are stored as
    rank_cap (faiss searches only the best rank_cap references). ``plan`` is how a CPU
    torch search split its work.
    """

    ranks: np.ndarray
    topk: np.ndarray
    topk_scores: np.ndarray
    backend: str
    rank_cap: int | None = None
    plan: CpuPlan | None = None


def faiss_available() -> bool:
    """True when the faiss module imports."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _block_shape(num_refs: int, k: int) -> tuple[int, int]:
    """(block size, block count) for the two-stage top-k: the size whose two stages sort the
    fewest values, as numpy sorts a short row in the time of the next power of two."""

    def cost(size: int) -> int:
        return sum(1 << (w - 1).bit_length() for w in (-(-num_refs // size), k * size))

    sizes = range(1, 2 * math.isqrt(num_refs // k) + 2)
    size = min((s for s in sizes if -(-num_refs // s) >= k), key=lambda s: (cost(s), s))
    return size, -(-num_refs // size)


def _k_largest(x: np.ndarray, k: int, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest values, descending, and their columns (any k among ties).

    ROW is arange(len(x))[:, None]."""
    width = x.shape[1]
    top = np.sort(x, axis=1)[:, width - k :][:, ::-1]  # numpy's SIMD sort beats partition here
    hit = x >= top[:, -1:]
    if np.count_nonzero(hit) != len(x) * k:  # ties at the k-th value
        return top, np.argpartition(x, width - k, axis=1)[:, width - k :]
    return top, np.flatnonzero(hit).reshape(-1, k) - row * width


def _chunk_results(
    sim: torch.Tensor, positives: np.ndarray, k: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ranks, top-k scores and ids of one CPU chunk of scores (padding columns -inf).

    Column c is in block c % count: the top-k lie in the k blocks with the largest maxima, so
    only k * size scores are sorted. A rank comes from the top-k when the true match is in
    it (every better reference then is); the other rows count their whole row.
    """
    rows, width = sim.shape
    count = width // size
    scores = sim.numpy()
    row = np.arange(rows)[:, None]
    pos = scores.ravel().take(positives + row[:, 0] * width)
    _, blocks = _k_largest(sim.view(rows, size, count).amax(1).numpy(), k, row)
    cand = scores.reshape(rows, size, count)[row, :, blocks].reshape(rows, k * size)
    vals, where = _k_largest(cand, k, row)  # cand[r, j * size + i] = column blocks[j] + i * count
    order = np.argsort(-cand.ravel().take(where + row * (k * size)), axis=1)
    where = where.ravel().take(order + row * k)
    ids = blocks.ravel().take(where // size + row * k) + where % size * count
    ranks = (vals > pos[:, None]).sum(1)
    rest = np.flatnonzero(pos < vals[:, -1])
    if len(rest):  # summing the mask as bytes into int32 is ~4x faster than a bool sum
        ranks[rest] = (scores[rest] > pos[rest, None]).view(np.uint8).sum(1, dtype=np.int32)
    return ranks, vals, ids


def _search_cuda(
    queries: torch.Tensor, refs: torch.Tensor, positives: torch.Tensor, k: int, rows: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunked ranks and top-k on the GPU: its comparison sums and topk are fast as they are."""
    n = len(queries)
    ranks = torch.empty(n, dtype=torch.long)
    top = torch.empty(n, k, dtype=torch.long)
    top_s = torch.empty(n, k, dtype=torch.float32)
    refs_t = refs.T.contiguous()
    positives = positives.to(queries.device)
    for s in range(0, n, rows):
        sim = queries[s : s + rows] @ refs_t
        pos = sim.gather(1, positives[s : s + rows, None])
        ranks[s : s + rows] = (sim > pos).sum(1).cpu()
        vals, idx = sim.topk(k, dim=1)
        top[s : s + rows] = idx.cpu()
        top_s[s : s + rows] = vals.float().cpu()
    return ranks, top, top_s


Results = tuple[np.ndarray, np.ndarray, np.ndarray]  # ranks, top-k scores, top-k ids

_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)
_POOL_LOCK = threading.Lock()


def thread_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of at least THREADS search threads, kept from one search to the
    next: starting threads, and each new thread's first BLAS call, cost a small search a
    large share of its time. A forked child makes its own. A pool replaced by a larger one
    serves the searches that hold it, and its threads end once none does."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
            pool = ThreadPoolExecutor(threads, thread_name_prefix="cvgl-retrieval")
            _POOL = (os.getpid(), threads, pool)
        return _POOL[2]


def _products(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: np.ndarray,
    k: int,
    size: int,
    width: int,
    threads: int,
    out: Results,
) -> Callable[[CpuPlan, int, int], None]:
    """run(plan, start, stop): exact results of queries start..stop into OUT, as PLAN says,
    using THREADS threads in all."""
    m = len(refs)

    def scores_buffer(rows: int) -> torch.Tensor:
        """ROWS x WIDTH scores; only the columns past m, which pad the last block, are set
        (-inf): the products overwrite the rest, so filling it all would be a wasted pass."""
        buffer = torch.empty((rows, width))
        buffer[:, m:] = -math.inf
        return buffer

    def store(s: int, e: int, found: Results) -> None:
        out[0][s:e], out[1][s:e], out[2][s:e] = found

    def workers(plan: CpuPlan, start: int, stop: int) -> None:
        count = min(plan.workers, -(-(stop - start) // plan.rows))
        starts: queue.SimpleQueue[int] = queue.SimpleQueue()
        for s in range(start, stop, plan.rows):
            starts.put(s)

        def work() -> None:
            torch.set_num_threads(max(1, threads // count))
            buffer = scores_buffer(plan.rows)
            with torch.inference_mode():
                while True:
                    try:
                        s = starts.get_nowait()
                    except queue.Empty:
                        return
                    e = min(s + plan.rows, stop)
                    sim = buffer[: e - s]
                    torch.mm(queries[s:e], refs.T, out=sim[:, :m])
                    store(s, e, _chunk_results(sim, positives[s:e], k, size))

        pool = thread_pool(count)
        for job in [pool.submit(work) for _ in range(count)]:
            job.result()

    def shared(plan: CpuPlan, start: int, stop: int) -> None:
        buffer = scores_buffer(plan.rows)

        def post(sim: torch.Tensor, s: int) -> None:
            torch.set_num_threads(1)
            with torch.inference_mode():
                store(s, s + len(sim), _chunk_results(sim, positives[s : s + len(sim)], k, size))

        pool = thread_pool(plan.threads)
        with torch.inference_mode():
            for s in range(start, stop, plan.rows):
                e = min(s + plan.rows, stop)
                sim = buffer[: e - s]
                torch.mm(queries[s:e], refs.T, out=sim[:, :m])
                part = -(-(e - s) // plan.threads)
                jobs = [pool.submit(post, sim[a : a + part], s + a) for a in range(0, e - s, part)]
                for job in jobs:
                    job.result()

    strategies = {"workers": workers, "shared": shared}
    return lambda plan, start, stop: strategies[plan.strategy](plan, start, stop)


def _search_cpu(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: np.ndarray,
    k: int,
    memory_bytes: int,
    strategy: str = "auto",
) -> tuple[Results, CpuPlan]:
    """Chunked exact ranks and top-k on the CPU by the plan STRATEGY names ('auto': the one
    measured fastest on this machine at these sizes; see benchmark/retrieval_plans.py)."""
    (n, d), m = queries.shape, len(refs)
    size, count = _block_shape(m, k)
    width = size * count
    threads = torch.get_num_threads()
    out = (np.empty(n, np.int64), np.empty((n, k), np.float32), np.empty((n, k), np.int64))
    run = _products(queries, refs, positives, k, size, width, threads, out)
    plans = candidate_plans(n, width, memory_bytes, threads)
    try:
        plan, done = choose(plans, run, (n, m, d), memory_bytes, threads, strategy)
        if done < n:
            run(plan, done, n)
    finally:
        torch.set_num_threads(threads)
    return out, plan


def search_torch(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: torch.Tensor,
    k: int,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    strategy: str = "auto",
) -> Retrieval:
    """Exact ranks (ties count as not better) and top-k by chunked matrix products; on the
    CPU split as STRATEGY says ('auto', 'workers' or 'shared', see retrieval_plans)."""
    m = len(refs)
    k = min(k, m)
    backend = f"torch-{queries.device.type}"
    if queries.is_cuda:
        with torch.inference_mode():
            found = _search_cuda(queries, refs, positives, k, torch_chunk_rows(m, memory_bytes))
        return Retrieval(*(t.numpy() for t in found), backend)
    (ranks, top_s, top), plan = _search_cpu(
        queries, refs, positives.numpy(), k, memory_bytes, strategy
    )
    return Retrieval(ranks, top, top_s, backend, plan=plan)


def faiss_gpu_available() -> bool:
    """True when faiss was built with GPU support and sees a GPU."""
    if not faiss_available():
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def faiss_chunk_rows(depth: int, memory_bytes: int) -> int:
    """Queries per faiss search call so results and faiss's BLAS block fit MEMORY_BYTES."""
    per_row = depth * (4 + 8 + 2) + FAISS_BLOCK_REFS * 4
    return max(1, memory_bytes // per_row)


def _ranks_from_lists(
    scores: np.ndarray, ids: np.ndarray, queries: np.ndarray, refs: np.ndarray, pos: np.ndarray
) -> np.ndarray:
    found = ids == pos[:, None]
    present = found.any(1)
    pos_score = np.where(present, scores[np.arange(len(ids)), found.argmax(1)], 0.0)
    missing = ~present
    if missing.any():  # true match beyond the searched depth: score it directly
        pos_score[missing] = np.einsum("nd,nd->n", queries[missing], refs[pos[missing]])
    return (scores > pos_score[:, None]).sum(1)  # = depth when the match was not reached


def search_faiss(
    queries: np.ndarray,
    refs: np.ndarray,
    positives: np.ndarray,
    k: int,
    rank_cap: int,
    use_gpu: bool = False,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Retrieval:
    """faiss exact inner-product search of the best max(k, rank_cap) references per query,
    in query chunks sized by MEMORY_BYTES."""
    import faiss

    n, m = len(queries), len(refs)
    k = min(k, m)
    depth = min(m, max(k, rank_cap))
    refs = np.ascontiguousarray(refs, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    positives = np.asarray(positives, dtype=np.int64)
    index = faiss.IndexFlatIP(refs.shape[1])
    backend = "faiss-cpu"
    if use_gpu and faiss_gpu_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        backend = "faiss-gpu"
    index.add(refs)
    ranks = np.empty(n, dtype=np.int64)
    top = np.empty((n, k), dtype=np.int64)
    top_s = np.empty((n, k), dtype=np.float32)
    rows = faiss_chunk_rows(depth, memory_bytes)
    for s in range(0, n, rows):
        q = queries[s : s + rows]
        scores, ids = index.search(q, depth)
        ranks[s : s + rows] = _ranks_from_lists(scores, ids, q, refs, positives[s : s + rows])
        top[s : s + rows] = ids[:, :k]
        top_s[s : s + rows] = scores[:, :k]
    return Retrieval(ranks, top, top_s, backend, rank_cap=depth if depth < m else None)


def search(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: np.ndarray,
    k: int,
    rank_cap: int,
    backend: str = "auto",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    strategy: str = "auto",
) -> Retrieval:
    """Retrieve with BACKEND: 'auto' = faiss's GPU index for CUDA descriptors when faiss-gpu is
    installed, otherwise chunked torch products (exact ranks; on CPU 5-7x faster than
    faiss-cpu's flat index in benchmarks/bench_retrieval.py); 'faiss' = faiss; 'torch'."""
    if backend == "auto" and queries.is_cuda and faiss_gpu_available():
        backend = "faiss"
    if backend == "faiss":
        if not faiss_available():
            raise BenchmarkError(
                "retrieval=faiss needs the faiss package (pip install faiss-cpu, or faiss-gpu); "
                "or use the default retrieval=auto."
            )
        return search_faiss(
            queries.float().cpu().numpy(),
            refs.float().cpu().numpy(),
            np.asarray(positives),
            k,
            rank_cap,
            use_gpu=queries.is_cuda,
            memory_bytes=memory_bytes,
        )
    positives = torch.as_tensor(positives)
    return search_torch(queries.float(), refs.float(), positives, k, memory_bytes, strategy)


EXTRA = "extra_"  # prefix of per-query model outputs (e.g. predicted offsets) in the .npz


def save_retrieval(
    path: str | Path,
    found: Retrieval,
    positives: np.ndarray,
    extras: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write per-query ranks, top-k ids and scores, the true matches and EXTRAS (per-query
    model outputs such as predicted offsets) to one .npz, atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        np.savez(
            fh,
            ranks=found.ranks,
            topk=found.topk,
            topk_scores=found.topk_scores,
            positives=np.asarray(positives, dtype=np.int64),
            rank_cap=np.int64(-1 if found.rank_cap is None else found.rank_cap),
            backend=np.str_(found.backend),
            **{EXTRA + name: np.asarray(v) for name, v in (extras or {}).items()},
        )
    return path


def load_retrieval(path: str | Path) -> tuple[Retrieval, np.ndarray]:
    """Read a file written by save_retrieval: the Retrieval and the true match per query."""
    with np.load(path) as data:
        cap = int(data["rank_cap"])
        found = Retrieval(
            data["ranks"],
            data["topk"],
            data["topk_scores"],
            str(data["backend"]),
            rank_cap=None if cap < 0 else cap,
        )
        return found, data["positives"]


def load_extras(path: str | Path) -> dict[str, np.ndarray]:
    """The per-query model outputs saved with the ranks (e.g. {'offset': (n, 2) metres})."""
    with np.load(path) as data:
        return {k[len(EXTRA) :]: data[k] for k in data.files if k.startswith(EXTRA)}
