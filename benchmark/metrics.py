"""Metric plugins that ship with the core: recall at K from the rank of the true match."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.data.base import CrossViewSplit
from benchmark.specs import MetricSpec


@dataclass
class Evaluation:
    """What retrieval produced for one test split; the input of every metric.

    ``ranks[i]`` = number of references strictly more similar to query i than its true
    match; ``topk``/``topk_scores`` are the best references per query, most similar first.
    ``extras`` holds per-query model outputs beyond descriptors (e.g. predicted offsets).
    """

    ranks: np.ndarray
    topk: np.ndarray
    topk_scores: np.ndarray
    split: CrossViewSplit
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_references(self) -> int:
        """Size of the reference (aerial) gallery."""
        return self.split.num_aerial


def one_percent_k(num_references: int) -> int:
    """K of R@1%: floor(N/100) + 1, as the CVM-Net/SAFA/SAIG reference code computes it."""
    return num_references // 100 + 1


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Percentage of queries whose true match has rank < K."""
    return float(np.mean(np.asarray(ranks) < k) * 100.0)


def recall_metrics(ev: Evaluation) -> dict[str, Any]:
    """R@1, R@5, R@10 and R@1% (with its K recorded) in percent."""
    k1 = one_percent_k(ev.num_references)
    return {
        "R@1": recall_at(ev.ranks, 1),
        "R@5": recall_at(ev.ranks, 5),
        "R@10": recall_at(ev.ranks, 10),
        "R@1%": recall_at(ev.ranks, k1),
        "R@1%_k": k1,
        "queries": int(len(ev.ranks)),
        "references": int(ev.num_references),
    }


METRICS = [MetricSpec("recall", recall_metrics, description="R@1/5/10 and R@1% (K = N//100 + 1)")]
