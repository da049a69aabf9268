"""Chunked retrieval equals the full similarity matrix exactly, ties included, at any chunk size."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.retrieval import (
    faiss_available,
    faiss_chunk_rows,
    load_retrieval,
    save_retrieval,
    search,
    torch_chunk_rows,
)

BACKENDS = ["torch"] + (["faiss"] if faiss_available() else [])


def integer_descriptors(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, ...]:
    """Small-integer vectors: every dot product is exact in float32 and ties are frequent."""
    rng = np.random.default_rng(seed)
    refs = rng.integers(-2, 3, size=(m, d)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    positives = rng.integers(0, m, size=n)
    refs[-1], positives[0] = refs[0], 0  # query 0's true match has an identical twin
    return queries, refs, positives


def wide_integer_descriptors(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, ...]:
    """Integer vectors in [-1000, 1000]: dot products stay exact in float32 and rarely tie."""
    rng = np.random.default_rng(seed)
    refs = rng.integers(-1000, 1001, size=(m, d)).astype(np.float32)
    positives = rng.integers(0, m, size=n)
    queries = rng.integers(-1000, 1001, size=(n, d)).astype(np.float32)
    queries[: n // 3] = refs[positives[: n // 3]]  # these true matches lead their top-k
    return queries, refs, positives


def full_matrix(q: np.ndarray, r: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the whole queries x references matrix in exact integer arithmetic."""
    sim = q.astype(np.int64) @ r.astype(np.int64).T
    ranks = (sim > sim[np.arange(len(q)), pos][:, None]).sum(1)
    return ranks, sim


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,m,d", [(1, 7, 3), (37, 50, 4), (203, 311, 8)])
@pytest.mark.parametrize("memory_bytes", [1, 10_000, 2**30])
def test_chunked_ranks_and_topk_equal_full_matrix(
    backend: str, n: int, m: int, d: int, memory_bytes: int
) -> None:
    q, r, pos = integer_descriptors(n, m, d, seed=n + m)
    k = 5
    found = search(
        torch.from_numpy(q), torch.from_numpy(r), pos, k, m, backend, memory_bytes=memory_bytes
    )
    ranks, sim = full_matrix(q, r, pos)
    assert (sim == sim[np.arange(n), pos][:, None]).sum() > n  # true matches are tied
    np.testing.assert_array_equal(found.ranks, ranks)
    assert found.rank_cap is None
    expected_top = -np.sort(-sim, axis=1)[:, :k]
    np.testing.assert_array_equal(found.topk_scores, expected_top)
    np.testing.assert_array_equal(np.take_along_axis(sim, found.topk, 1), expected_top)


@pytest.mark.parametrize("m", [7, 300, 2003])
@pytest.mark.parametrize("memory_bytes", [10_000, 2**30])
def test_torch_without_ties_ranks_within_and_beyond_the_topk(m: int, memory_bytes: int) -> None:
    q, r, pos = wide_integer_descriptors(150, m, 8, seed=m)
    k = 5
    found = search(
        torch.from_numpy(q), torch.from_numpy(r), pos, k, m, "torch", memory_bytes=memory_bytes
    )
    ranks, sim = full_matrix(q, r, pos)
    assert 0 < np.sum(ranks < k) < len(q)  # some true matches in the top-k, some beyond it
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_array_equal(found.topk, np.argsort(-sim, axis=1, kind="stable")[:, :k])
    np.testing.assert_array_equal(found.topk_scores, -np.sort(-sim, axis=1)[:, :k])


@pytest.mark.parametrize("strategy", ["workers", "shared"])
def test_the_padding_of_the_last_block_never_outranks_a_reference(strategy: str) -> None:
    # every score is negative, so a padding column left at 0 (or any stale value) would win
    rng = np.random.default_rng(5)
    m = 2003  # not a multiple of the block size: the last block is padded
    refs = rng.integers(1, 1001, size=(m, 8)).astype(np.float32)
    queries = -rng.integers(1, 1001, size=(150, 8)).astype(np.float32)
    pos = rng.integers(0, m, size=150)
    found = search(
        torch.from_numpy(queries), torch.from_numpy(refs), pos, 5, m, "torch", strategy=strategy
    )
    ranks, sim = full_matrix(queries, refs, pos)
    assert found.topk.max() < m
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_array_equal(found.topk_scores, -np.sort(-sim, axis=1)[:, :5])


def test_torch_workers_match_one_thread_and_restore_the_thread_count() -> None:
    q, r, pos = wide_integer_descriptors(1100, 300, 8, seed=2)
    threads = torch.get_num_threads()
    try:
        found = []
        for count in (2, 1):
            torch.set_num_threads(count)
            found.append(search(torch.from_numpy(q), torch.from_numpy(r), pos, 10, 300, "torch"))
            assert torch.get_num_threads() == count
    finally:
        torch.set_num_threads(threads)
    for name in ("ranks", "topk", "topk_scores"):
        np.testing.assert_array_equal(getattr(found[0], name), getattr(found[1], name))


def test_chunk_size_follows_the_memory_budget() -> None:
    assert torch_chunk_rows(92_802, 512 * 2**20) == 512 * 2**20 // (92_802 * 12)
    assert torch_chunk_rows(92_802, 512 * 2**20, workers=2) == 512 * 2**20 // (92_802 * 24)
    assert torch_chunk_rows(92_802, 1) == 1
    assert faiss_chunk_rows(929, 2**20) < faiss_chunk_rows(929, 2**24)


def test_per_query_ranks_and_topk_round_trip(tmp_path: Path) -> None:
    q, r, pos = integer_descriptors(30, 40, 4, seed=1)
    found = search(torch.from_numpy(q), torch.from_numpy(r), pos, 10, 3, "torch")
    path = save_retrieval(tmp_path / "run.retrieval.npz", found, pos)
    back, positives = load_retrieval(path)
    np.testing.assert_array_equal(back.ranks, found.ranks)
    np.testing.assert_array_equal(back.topk, found.topk)
    np.testing.assert_array_equal(back.topk_scores, found.topk_scores)
    np.testing.assert_array_equal(positives, pos)
    assert back.rank_cap is None and back.backend == "torch-cpu"
    assert [p.name for p in tmp_path.iterdir()] == ["run.retrieval.npz"]
