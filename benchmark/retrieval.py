"""Nearest-neighbour retrieval: rank of the true match and top-k lists, never N x N in memory.

Two exact backends: faiss (inner product on L2-normalised descriptors, GPU index when
CUDA and faiss-gpu are present) and chunked torch matrix products (CPU or CUDA). Both
keep memory O(chunk x N + N x k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_MEMORY_BYTES = 512 * 2**20


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


def _chunk_rows(num_refs: int, memory_bytes: int) -> int:
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
    rows = _chunk_rows(m, memory_bytes)
    ranks = torch.empty(n, dtype=torch.long)
    top = torch.empty(n, k, dtype=torch.long)
    top_s = torch.empty(n, k, dtype=torch.float32)
    refs_t = refs.T.contiguous()
    with torch.inference_mode():
        for s in range(0, n, rows):
            q = queries[s : s + rows]
            sim = q @ refs_t
            pos = sim.gather(1, positives[s : s + rows].to(sim.device)[:, None])
            ranks[s : s + rows] = (sim > pos).sum(1).cpu()
            vals, idx = sim.topk(k, dim=1)
            top[s : s + rows] = idx.cpu()
            top_s[s : s + rows] = vals.float().cpu()
    return Retrieval(ranks.numpy(), top.numpy(), top_s.numpy(), f"torch-{queries.device.type}")


def search_faiss(
    queries: np.ndarray,
    refs: np.ndarray,
    positives: np.ndarray,
    k: int,
    rank_cap: int,
    use_gpu: bool = False,
) -> Retrieval:
    """faiss exact inner-product search of the best max(k, rank_cap) references per query."""
    import faiss

    m = len(refs)
    depth = min(m, max(k, rank_cap))
    index = faiss.IndexFlatIP(refs.shape[1])
    backend = "faiss-cpu"
    if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        backend = "faiss-gpu"
    index.add(np.ascontiguousarray(refs, dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
    found = ids == positives[:, None]
    present = found.any(1)
    pos_score = np.where(present, scores[np.arange(len(ids)), found.argmax(1)], 0.0)
    missing = ~present
    if missing.any():  # true match beyond the searched depth: score it directly
        pos_score[missing] = np.einsum("nd,nd->n", queries[missing], refs[positives[missing]])
    ranks = (scores > pos_score[:, None]).sum(1)  # = depth when the match was not reached
    return Retrieval(
        ranks.astype(np.int64),
        ids[:, :k],
        scores[:, :k],
        backend,
        rank_cap=depth if depth < m else None,
    )


def search(
    queries: torch.Tensor,
    refs: torch.Tensor,
    positives: np.ndarray,
    k: int,
    rank_cap: int,
    backend: str = "auto",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Retrieval:
    """Retrieve with BACKEND ('auto' = faiss when installed, else torch)."""
    if backend == "faiss" or (backend == "auto" and faiss_available()):
        return search_faiss(
            queries.float().cpu().numpy(),
            refs.float().cpu().numpy(),
            np.asarray(positives),
            k,
            rank_cap,
            use_gpu=queries.is_cuda,
        )
    return search_torch(queries.float(), refs.float(), torch.as_tensor(positives), k, memory_bytes)
