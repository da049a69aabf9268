"""CPU retrieval strategies: exact under each, chosen by measurement, cached per machine."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import retrieval, retrieval_plans
from benchmark.retrieval import search
from benchmark.retrieval_plans import (
    BYTES_PER_SCORE,
    STRATEGIES,
    candidate_plans,
    even_rows,
    plan_cache_path,
)
from tests.test_retrieval_scale import full_matrix, integer_descriptors, wide_integer_descriptors


@pytest.fixture
def two_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private plan cache, and trials cheap enough for tiny searches."""
    monkeypatch.setenv("CVGL_BENCHMARK_CACHE", str(tmp_path))
    monkeypatch.setattr(retrieval_plans, "TRIAL_MIN_GFLOP", 0.0)
    monkeypatch.setattr(retrieval_plans, "TRIAL_SECONDS", 0.0)
    monkeypatch.setattr(retrieval_plans, "busy", lambda: False)  # whatever else this CPU runs
    return tmp_path / "retrieval-plans.json"


def _search(q: np.ndarray, r: np.ndarray, pos: np.ndarray, **kw: object):
    m = len(r)
    return search(torch.from_numpy(q), torch.from_numpy(r), pos, 5, m, "torch", **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("memory_bytes", [1, 40_000, 2**30])
def test_each_strategy_gives_exact_ranks_and_topk_with_ties(
    strategy: str, memory_bytes: int, two_threads: None
) -> None:
    q, r, pos = integer_descriptors(700, 311, 8, seed=4)
    found = _search(q, r, pos, memory_bytes=memory_bytes, strategy=strategy)
    assert found.plan.strategy == strategy and found.plan.source == "forced"
    ranks, sim = full_matrix(q, r, pos)
    assert (sim == sim[np.arange(len(q)), pos][:, None]).sum() > len(q)  # tied true matches
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_array_equal(found.topk_scores, -np.sort(-sim, axis=1)[:, :5])
    np.testing.assert_array_equal(np.take_along_axis(sim, found.topk, 1), found.topk_scores)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("threads", [1, 2, 8])
@pytest.mark.parametrize("memory_bytes", [10_000, 2**24, 512 * 2**20])
def test_every_plan_keeps_its_chunks_within_the_memory_budget(
    threads: int, memory_bytes: int
) -> None:
    width = 20_000
    for plan in candidate_plans(50_000, width, memory_bytes, threads).values():
        if plan.rows > 1:  # a single query row is the least any plan can hold
            assert plan.rows * plan.workers * width * BYTES_PER_SCORE <= memory_bytes
        assert plan.workers <= plan.threads == threads


def test_many_cores_are_offered_fewer_workers_with_more_threads_each() -> None:
    plans = candidate_plans(8884, 8884, 512 * 2**20, 16)
    assert list(plans) == ["workers x16", "workers x8", "workers x4", "workers x2", "shared"]
    assert [p.rows for p in plans.values()] == [278, 556, 741, 889, 1777]
    assert all(p.threads == 16 for p in plans.values())
    assert plans["workers x4"].describe() == "workers (4 x 741 rows, 4 threads each, forced)"
    # a budget for 3 concurrent chunks of 128 rows: 3 workers share the 16 threads
    tight = candidate_plans(8884, 8884, 3 * 128 * 8884 * BYTES_PER_SCORE, 16)
    # at most 128 rows each: 8,884 in 72 equal chunks; shared at most 384: in 24
    expected = [("workers x3", 124), ("shared", 371)]
    assert [(p.name, p.rows) for p in tight.values()] == expected


def test_the_measured_choice_is_cached_reused_and_remeasured_for_other_sizes(
    cache: Path, two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, r, pos = wide_integer_descriptors(600, 300, 16, seed=1)
    expected, _ = full_matrix(q, r, pos)
    first = _search(q, r, pos)
    assert first.plan.source == "measured"
    np.testing.assert_array_equal(first.ranks, expected)  # the trial's rows are real results
    entries = json.loads(cache.read_text())["plans"]
    (machine,) = entries
    assert str(torch.get_num_threads()) + " threads" in machine
    (sizes,) = entries[machine]
    assert entries[machine][sizes]["plan"] == first.plan.name
    assert set(entries[machine][sizes]["seconds"]) == {"workers x2", "shared"}

    def no_trial(*args: object) -> None:
        raise AssertionError("measured again although the choice was cached")

    measure = retrieval_plans.measure
    monkeypatch.setattr(retrieval_plans, "measure", no_trial)
    for name in ("workers x2", "shared"):  # whatever the cache says is what runs
        entries[machine][sizes]["plan"] = name
        cache.write_text(json.dumps({"version": retrieval_plans.CACHE_VERSION, "plans": entries}))
        again = _search(q, r, pos)
        assert (again.plan.name, again.plan.source) == (name, "cached")
        np.testing.assert_array_equal(again.ranks, expected)

    monkeypatch.setattr(retrieval_plans, "measure", measure)
    entries[machine][sizes]["plan"] = "workers x64"  # a plan these sizes do not offer
    cache.write_text(json.dumps({"version": retrieval_plans.CACHE_VERSION, "plans": entries}))
    assert _search(q, r, pos).plan.source == "measured"
    q2, r2, pos2 = wide_integer_descriptors(600, 1200, 16, seed=2)  # 4x the references
    other = _search(q2, r2, pos2)
    assert other.plan.source == "measured"
    np.testing.assert_array_equal(other.ranks, full_matrix(q2, r2, pos2)[0])
    assert len(json.loads(cache.read_text())["plans"][machine]) == 2


def test_every_plan_on_four_threads_gives_exact_ranks_and_topk(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        q, r, pos = integer_descriptors(700, 311, 8, seed=6)
        ranks, sim = full_matrix(q, r, pos)
        first = _search(q, r, pos)
        entries = json.loads(cache.read_text())["plans"]
        (machine,) = entries
        (sizes,) = entries[machine]
        names = set(entries[machine][sizes]["seconds"])
        assert names == {"workers x4", "workers x2", "shared"}  # every plan was timed
        np.testing.assert_array_equal(first.ranks, ranks)
        for name in names:
            entries[machine][sizes]["plan"] = name
            version = retrieval_plans.CACHE_VERSION
            cache.write_text(json.dumps({"version": version, "plans": entries}))
            found = _search(q, r, pos)
            assert (found.plan.name, found.plan.source) == (name, "cached")
            np.testing.assert_array_equal(found.ranks, ranks)
            np.testing.assert_array_equal(found.topk_scores, -np.sort(-sim, axis=1)[:, :5])
            np.testing.assert_array_equal(np.take_along_axis(sim, found.topk, 1), found.topk_scores)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def test_a_damaged_or_unwritable_cache_only_costs_a_new_measurement(
    cache: Path, two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, r, pos = wide_integer_descriptors(300, 200, 8, seed=3)
    cache.write_text("{not json")
    assert _search(q, r, pos).plan.source == "measured"
    assert _search(q, r, pos).plan.source == "cached"
    blocker = cache.parent / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CVGL_BENCHMARK_CACHE", str(blocker))  # a cache folder that is a file
    with pytest.warns(UserWarning, match="Could not cache the retrieval plan"):
        found = _search(q, r, pos)
    assert found.plan.source == "measured" and plan_cache_path().parent == blocker
    np.testing.assert_array_equal(found.ranks, full_matrix(q, r, pos)[0])


def test_a_choice_measured_on_a_busy_machine_is_measured_again_when_it_is_quiet(
    cache: Path, two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, r, pos = wide_integer_descriptors(300, 200, 8, seed=5)
    monkeypatch.setattr(retrieval_plans, "busy", lambda: True)
    assert _search(q, r, pos).plan.source == "measured"
    assert _search(q, r, pos).plan.source == "cached"  # still busy: nothing better to measure
    (entry,) = next(iter(json.loads(cache.read_text())["plans"].values())).values()
    assert entry["busy"] is True
    monkeypatch.setattr(retrieval_plans, "busy", lambda: False)
    assert _search(q, r, pos).plan.source == "measured"
    assert _search(q, r, pos).plan.source == "cached"


def test_small_searches_take_the_default_without_a_trial(
    two_threads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVGL_BENCHMARK_CACHE", str(tmp_path))
    q, r, pos = integer_descriptors(50, 40, 4, seed=0)
    found = _search(q, r, pos)
    assert (found.plan.strategy, found.plan.source) == ("workers", "default")
    assert not (tmp_path / "retrieval-plans.json").exists()


@pytest.mark.parametrize("n", [1, 7, 2000, 8884, 92_802])
@pytest.mark.parametrize("most,parts", [(1, 1), (241, 2), (1024, 2), (1024, 16)])
def test_workers_get_equal_shares_of_chunks_no_larger_than_allowed(
    n: int, most: int, parts: int
) -> None:
    rows = even_rows(n, most, parts)
    starts = range(0, n, rows)
    assert 1 <= rows <= most
    if n >= most * parts:  # every worker takes as many chunks, of equal size but a few rows
        assert len(starts) % parts == 0
        share = [sum(min(rows, n - s) for s in starts[w::parts]) for w in range(parts)]
        assert max(share) - min(share) < len(starts)


def test_an_unknown_strategy_is_named_in_the_error() -> None:
    q, r, pos = integer_descriptors(5, 4, 2, seed=0)
    with pytest.raises(ValueError, match="not 'fastest'"):
        _search(q, r, pos, strategy="fastest")


def _search_matches_full_matrix(seed: int) -> bool:
    q, r, pos = integer_descriptors(300, 200, 8, seed=seed)
    found = _search(q, r, pos, strategy="workers")
    return bool(np.array_equal(found.ranks, full_matrix(q, r, pos)[0]))


def test_searches_reuse_their_threads_and_a_forked_child_gets_its_own(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[set[threading.Thread]] = []
    post = retrieval._chunk_results

    def recorded(*args: object) -> object:
        used[-1].add(threading.current_thread())
        return post(*args)

    monkeypatch.setattr(retrieval, "_chunk_results", recorded)
    used.append(set())
    assert _search_matches_full_matrix(seed=7)
    kept = set(threading.enumerate())
    used.append(set())
    assert _search_matches_full_matrix(seed=8)
    assert used[1] and used[1] <= kept - {threading.current_thread()}  # threads kept between
    assert set(threading.enumerate()) == kept  # and none started for the second search
    # a child forked after the parent's threads exist has none of them: it must start its own
    monkeypatch.undo()
    with multiprocessing.get_context("fork").Pool(1) as child:
        assert child.apply_async(_search_matches_full_matrix, (9,)).get(timeout=120)
