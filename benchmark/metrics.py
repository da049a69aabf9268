"""Metric plugins that ship with the core: recall at K from the rank of the true match."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.data.base import CrossViewSplit
from benchmark.data.vigor import METRES_PER_PX, TILE_PX
from benchmark.specs import MetricDisplay, MetricSpec


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


RECALL_AT = (("R@1", 1), ("R@5", 5), ("R@10", 10), ("R@1%", "R@1%_k"))
METRICS = [
    MetricSpec(
        "recall",
        recall_metrics,
        description="R@1/5/10 and R@1% (K = N//100 + 1)",
        display=tuple(
            MetricDisplay.percent(key, rank=key == "R@1", plot="recall", x=x)
            for key, x in RECALL_AT
        ),
    )
]


VIGOR_TILE_METRES = TILE_PX * METRES_PER_PX  # 72.96 m, the real VIGOR tile side
METRE_THRESHOLDS = (1, 5, 10, 25, 50, 100)


def hit_rate_metrics(ev: Evaluation) -> dict[str, Any]:
    """Hit rate (VIGOR): percentage of queries whose top-1 is the positive or a semi-positive."""
    top1 = ev.topk[:, 0]
    hit = (top1 == ev.split.positives) | (ev.split.semi_positives == top1[:, None]).any(1)
    return {"hit_rate": float(np.mean(hit) * 100.0)}


def curve_thresholds() -> np.ndarray:
    """VIGOR's accuracy-curve thresholds in metres: 1.1^(i/5), i = 1..499."""
    return 1.1 ** (np.arange(1, 500) / 5.0)


def localisation_errors(ev: Evaluation) -> np.ndarray:
    """Metres from each query to its predicted position: top-1 centre (+ predicted offset)."""
    pred = np.asarray(ev.split.aerial_xy, dtype=np.float64)[ev.topk[:, 0]]
    if "offset" in ev.extras:
        pred = pred + ev.extras["offset"]
    return np.linalg.norm(pred - np.asarray(ev.split.ground_xy, dtype=np.float64), axis=1)


def metre_metrics(ev: Evaluation) -> dict[str, Any]:
    """Meter-level accuracy at 1..100 m, median error and the full accuracy curve (percent).

    ``acc@10m_vigor_scale`` reads the curve at 10 m scaled by the tile side relative to
    VIGOR's 72.96 m tiles, so worlds with other tile sizes compare with the paper's 10 m.
    """
    err = localisation_errors(ev)
    out: dict[str, Any] = {f"acc@{t}m": float(np.mean(err <= t) * 100.0) for t in METRE_THRESHOLDS}
    out["median_error_m"] = float(np.median(err))
    out["offset_refined"] = "offset" in ev.extras
    if ev.split.aerial_tile_metres:
        scaled = 10.0 * ev.split.aerial_tile_metres / VIGOR_TILE_METRES
        out["acc@10m_vigor_scale"] = float(np.mean(err <= scaled) * 100.0)
        out["vigor_scale_10m_m"] = scaled
    t = curve_thresholds()
    acc = np.searchsorted(np.sort(err), t, side="right") / max(1, len(err)) * 100.0
    out["accuracy_curve"] = {"thresholds_m": t.round(4).tolist(), "accuracy": acc.tolist()}
    return out


METRICS += [
    MetricSpec(
        "hit-rate",
        hit_rate_metrics,
        applies=lambda ev: ev.split.semi_positives is not None,
        description="top-1 is the positive or a semi-positive (VIGOR)",
        display=(MetricDisplay.percent("hit_rate", label="hit rate"),),
    ),
    MetricSpec(
        "metre-accuracy",
        metre_metrics,
        applies=lambda ev: ev.split.ground_xy is not None and ev.split.aerial_xy is not None,
        description="meter-level accuracy of the top-1 position (+ predicted offset), curve",
        display=(
            *(
                MetricDisplay.percent(f"acc@{t}m", column=t == 10, plot="metres", x=t)
                for t in METRE_THRESHOLDS
            ),
            MetricDisplay(
                key="median_error_m",
                label="median error m",
                unit="m",
                higher_is_better=False,
                bounds=(0.0, None),
            ),
            MetricDisplay.percent(
                "accuracy_curve", column=False, plot="metres", x="thresholds_m", y="accuracy"
            ),
        ),
    ),
]
