"""Metric plugins that ship with the core: recall at K from the rank of the true match."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.base import CrossViewSplit
from benchmark.data.vigor import (
    EARTH_RADIUS_M,
    METRES_PER_PX,
    TILE_PX,
    city_of,
    plane_to_latlon,
)
from benchmark.errors import BenchmarkError
from benchmark.retrieval import load_extras, load_retrieval
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


def load_evaluation(path: str | Path, split: CrossViewSplit) -> Evaluation:
    """The Evaluation a run saved in its ``<result>.retrieval.npz`` (ranks, top-k, predicted
    offsets), to recompute metrics from the files; SPLIT is the run's test split (same
    dataset options and --limit)."""
    found, positives = load_retrieval(path)
    if not np.array_equal(positives, split.positives):
        raise BenchmarkError(
            f"{str(path)!r} holds the retrieval of another test split (its true matches "
            "differ); load the dataset with the run's split, dataset options and --limit."
        )
    return Evaluation(found.ranks, found.topk, found.topk_scores, split, load_extras(path))


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
RECALLS = tuple(key for key, _ in RECALL_AT)
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


def great_circle_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle metres between (n, 2) (lat, lon) degrees A and B (haversine on VIGOR's
    sphere, R = 6,371,004 m; VIGOR's code uses the cosine form, which loses centimetres)."""
    lat1, lon1, lat2, lon2 = np.radians(np.concatenate([a, b], axis=1)).T
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def moved_by(latlon: np.ndarray, east_north: np.ndarray) -> np.ndarray:
    """(lat, lon) degrees after moving EAST_NORTH metres from LATLON along the local axes."""
    lat = np.radians(latlon[:, 0])
    north = east_north[:, 1] / EARTH_RADIUS_M
    half = np.sin(np.abs(east_north[:, 0]) / (2 * EARTH_RADIUS_M)) / np.cos(lat)
    east = np.sign(east_north[:, 0]) * 2 * np.arcsin(np.clip(half, 0.0, 1.0))
    return latlon + np.degrees(np.stack([north, east], axis=1))


def localisation_errors(ev: Evaluation) -> np.ndarray:
    """Metres from each query to its predicted position: top-1 centre (+ predicted offset).

    On splits with GPS (``meta['plane_origins']``, VIGOR) the great-circle distance between
    the query's position and the prediction, a real distance also across cities; on
    generated worlds and UTM splits the distance in their metric plane.
    """
    split = ev.split
    tiles = np.asarray(split.aerial_xy, dtype=np.float64)[ev.topk[:, 0]]
    truth = np.asarray(split.ground_xy, dtype=np.float64)
    offset = ev.extras.get("offset")
    origins = split.meta.get("plane_origins")
    if origins is None:
        pred = tiles if offset is None else tiles + offset
        return np.linalg.norm(pred - truth, axis=1)
    pred = plane_to_latlon(tiles, origins)
    if offset is not None:
        pred = moved_by(pred, np.asarray(offset, dtype=np.float64))
    return great_circle_m(plane_to_latlon(truth, origins), pred)


def metre_metrics(ev: Evaluation) -> dict[str, Any]:
    """Metre-level accuracy at 1..100 m, median error and the full accuracy curve (percent);
    on multi-city splits also the share of queries whose top-1 is in another city.

    ``acc@10m_vigor_scale`` reads the curve at 10 m scaled by the tile side relative to
    VIGOR's 72.96 m tiles, so worlds with other tile sizes compare with the paper's 10 m.
    """
    err = localisation_errors(ev)
    out: dict[str, Any] = {f"acc@{t}m": float(np.mean(err <= t) * 100.0) for t in METRE_THRESHOLDS}
    out["median_error_m"] = float(np.median(err))
    out["offset_refined"] = "offset" in ev.extras
    if ev.split.meta.get("plane_origins") is not None:
        other = city_of(ev.split.ground_xy) != city_of(ev.split.aerial_xy[ev.topk[:, 0]])
        out["wrong_city_pct"] = float(np.mean(other) * 100.0)
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
        description="metre-level accuracy of the top-1 position (+ predicted offset), curve",
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
