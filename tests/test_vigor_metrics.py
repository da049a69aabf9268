"""Hit rate and metre-level accuracy against brute-force computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.data.base import CrossViewSplit
from benchmark.metrics import (
    METRICS,
    VIGOR_TILE_METRES,
    Evaluation,
    curve_thresholds,
    hit_rate_metrics,
    metre_metrics,
)


def evaluation(semis: bool = True, offsets: bool = False, seed: int = 0) -> Evaluation:
    rng = np.random.default_rng(seed)
    n, m = 60, 25
    aerial_xy = rng.uniform(0, 300, size=(m, 2))
    positives = rng.integers(0, m, size=n)
    semi = np.stack([(positives + k) % m for k in (1, 2, 3)], 1)
    ground_xy = aerial_xy[positives] + rng.uniform(-8, 8, size=(n, 2))
    topk = np.stack([rng.permutation(m)[:5] for _ in range(n)])
    topk[:20, 0] = positives[:20]  # some exact hits
    topk[20:35, 0] = semi[20:35, 1]  # some semi-positive hits
    split = CrossViewSplit(
        name="test",
        load_ground=lambda i: None,
        load_aerial=lambda j: None,
        num_ground=n,
        num_aerial=m,
        positives=positives,
        semi_positives=semi if semis else None,
        ground_xy=ground_xy,
        aerial_xy=aerial_xy,
        aerial_tile_metres=32.0,
    )
    extras = {"offset": rng.normal(0, 5, size=(n, 2))} if offsets else {}
    return Evaluation(np.zeros(n, int), topk, np.zeros(topk.shape), split, extras)


def test_hit_rate_matches_brute_force() -> None:
    ev = evaluation()
    hits = 0
    for i in range(len(ev.ranks)):
        covering = {int(ev.split.positives[i]), *map(int, ev.split.semi_positives[i])}
        hits += int(ev.topk[i, 0]) in covering
    assert hit_rate_metrics(ev)["hit_rate"] == pytest.approx(100 * hits / len(ev.ranks))
    assert hit_rate_metrics(ev)["hit_rate"] >= 35 / 60 * 100


@pytest.mark.parametrize("offsets", [False, True])
def test_metre_accuracy_matches_brute_force(offsets: bool) -> None:
    ev = evaluation(offsets=offsets)
    errors = []
    for i in range(len(ev.ranks)):
        px, py = ev.split.aerial_xy[ev.topk[i, 0]]
        if offsets:
            px, py = px + ev.extras["offset"][i, 0], py + ev.extras["offset"][i, 1]
        gx, gy = ev.split.ground_xy[i]
        errors.append(math.hypot(px - gx, py - gy))
    got = metre_metrics(ev)
    assert got["offset_refined"] is offsets
    for t in (1, 5, 10, 25, 50, 100):
        assert got[f"acc@{t}m"] == pytest.approx(100 * sum(e <= t for e in errors) / len(errors))
    assert got["median_error_m"] == pytest.approx(sorted(errors)[29] / 2 + sorted(errors)[30] / 2)
    scaled = 10 * 32.0 / VIGOR_TILE_METRES
    assert got["vigor_scale_10m_m"] == pytest.approx(scaled)
    assert got["acc@10m_vigor_scale"] == pytest.approx(
        100 * sum(e <= scaled for e in errors) / len(errors)
    )
    curve = got["accuracy_curve"]
    assert len(curve["thresholds_m"]) == 499
    for j in (0, 100, 250, 498):
        t = curve_thresholds()[j]
        assert curve["accuracy"][j] == pytest.approx(100 * sum(e <= t for e in errors) / 60)
    assert curve["accuracy"] == sorted(curve["accuracy"])


def test_metrics_apply_only_where_the_labels_exist() -> None:
    specs = {m.name: m for m in METRICS}
    assert specs["hit-rate"].applies(evaluation())
    assert not specs["hit-rate"].applies(evaluation(semis=False))
    ev = evaluation()
    ev.split.ground_xy = None
    assert not specs["metre-accuracy"].applies(ev)
