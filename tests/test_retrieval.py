"""Ranks and recall against a brute-force computation, ties included, on both backends."""

import numpy as np
import pytest
import torch

from benchmark.metrics import Evaluation, one_percent_k, recall_metrics
from benchmark.retrieval import faiss_available, search


def brute_force_ranks(q: np.ndarray, r: np.ndarray, pos: np.ndarray) -> np.ndarray:
    sim = q @ r.T
    return np.array([(sim[i] > sim[i, pos[i]]).sum() for i in range(len(q))])


def descriptors_with_ties(n: int, m: int, d: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(m, d)).astype(np.float32)
    refs[m // 2 :] = refs[: m - m // 2]  # every reference has an identical twin
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    pos = rng.integers(0, m, size=n)
    q = refs[pos] + 0.8 * rng.normal(size=(n, d)).astype(np.float32)
    q[: n // 4] = refs[pos[: n // 4]]  # exact matches tie with their twin
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32), refs, pos


BACKENDS = ["torch"] + (["faiss"] if faiss_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,m", [(50, 40), (300, 257)])
def test_ranks_match_brute_force_with_ties(backend: str, n: int, m: int) -> None:
    q, r, pos = descriptors_with_ties(n, m, 16, seed=n)
    found = search(
        torch.from_numpy(q),
        torch.from_numpy(r),
        pos,
        k=10,
        rank_cap=m,
        backend=backend,
        memory_bytes=4096,
    )
    expected = brute_force_ranks(q, r, pos)
    np.testing.assert_array_equal(found.ranks, expected)
    sims = q @ r.T
    np.testing.assert_allclose(found.topk_scores[:, 0], sims.max(1), atol=1e-5)


def test_recall_percentages_and_one_percent_k() -> None:
    q, r, pos = descriptors_with_ties(120, 250, 8, seed=3)
    found = search(torch.from_numpy(q), torch.from_numpy(r), pos, 10, 250, backend="torch")
    ranks = brute_force_ranks(q, r, pos)

    class Split:
        num_aerial = 250

    m = recall_metrics(Evaluation(found.ranks, found.topk, found.topk_scores, Split()))
    assert m["R@1%_k"] == one_percent_k(250) == 3
    for k, key in ((1, "R@1"), (5, "R@5"), (10, "R@10"), (3, "R@1%")):
        assert m[key] == pytest.approx(100.0 * np.mean(ranks < k))
    assert one_percent_k(8884) == 89


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_caps_ranks_beyond_its_search_depth() -> None:
    q, r, pos = descriptors_with_ties(200, 300, 8, seed=5)
    capped = search(torch.from_numpy(q), torch.from_numpy(r), pos, 5, 20, backend="faiss")
    exact = brute_force_ranks(q, r, pos)
    assert capped.rank_cap == 20
    np.testing.assert_array_equal(capped.ranks, np.minimum(exact, 20))
