"""Nearest-neighbour retrieval: rank of the true match and top-k lists, never N x N in memory.

Two exact backends: chunked torch matrix products (the default; CPU or CUDA, exact ranks)
and faiss (inner product on L2-normalised descriptors, GPU index when CUDA and faiss-gpu
are present; ranks exact below its search depth). Both work in query chunks sized by a
memory budget: memory is the descriptors, one chunk and N x k results, never N x N.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.errors import BenchmarkError
from benchmark.io import atomic_write

DEFAULT_MEMORY_BYTES = 512 * 2**20
FAISS_BLOCK_REFS = 1024  # faiss scores queries against references in blocks of this many


@dataclass
class Retrieval:
    """Per query: rank of the true match, top-k reference ids and scores (best first).

    ``rank_cap`` is None when ranks are exact; otherwise ranks >= rank_cap are stored as
    rank_cap (faiss searches only the best rank_cap references).
    """

    ranks: np.ndarray
    topk: np.ndarray
    topk_scores: np.ndarray
    backend: str
    rank_cap: int | None = None


def faiss_available() -> bool:
    """True when the faiss module imports."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def torch_chunk_rows(num_refs: int, memory_bytes: int) -> int:
    """Queries per matrix product: a chunk's scores, comparison mask and top-k copy fit."""
    return max(1, memory_bytes // max(1, num_refs * 4 * 3))


def search_torch(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: torch.Tensor,
    k: int,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Retrieval:
    """Exact ranks (ties count as not better) and top-k by chunked matrix products."""
    n, m = len(queries), len(refs)
    k = min(k, m)
    rows = torch_chunk_rows(m, memory_bytes)
    ranks = torch.empty(n, dtype=torch.long)
    top = torch.empty(n, k, dtype=torch.long)
    top_s = torch.empty(n, k, dtype=torch.float32)
    refs_t = refs.T.contiguous()  # one (D, M) copy: products of short chunks run faster
    with torch.inference_mode():
        for s in range(0, n, rows):
            q = queries[s : s + rows]
            sim = q @ refs_t
            pos = sim.gather(1, positives[s : s + rows].to(sim.device)[:, None])
            if sim.is_cuda:
                ranks[s : s + rows] = (sim > pos).sum(1).cpu()
            else:  # numpy counts a CPU comparison mask ~5x faster than torch's bool sum
                ranks[s : s + rows] = torch.from_numpy((sim.numpy() > pos.numpy()).sum(1))
            vals, idx = sim.topk(k, dim=1)
            top[s : s + rows] = idx.cpu()
            top_s[s : s + rows] = vals.float().cpu()
    return Retrieval(ranks.numpy(), top.numpy(), top_s.numpy(), f"torch-{queries.device.type}")


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
) -> Retrieval:
    """Retrieve with BACKEND: 'auto' = faiss's GPU index for CUDA descriptors when faiss-gpu is
    installed, otherwise chunked torch products (exact ranks; on CPU ~4x faster than
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
    return search_torch(queries.float(), refs.float(), torch.as_tensor(positives), k, memory_bytes)


def save_retrieval(path: str | Path, found: Retrieval, positives: np.ndarray) -> Path:
    """Write per-query ranks, top-k ids and scores and the true matches to one .npz, atomically."""
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
