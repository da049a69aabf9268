"""VIGOR's metre metrics: real great-circle distances, the wrong-city share, and metrics
recomputed from the saved files (offsets included) equal to the run's."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import save_file

from benchmark.config import resolve
from benchmark.data.vigor import build_vigor, pano_latlon, tile_latlon
from benchmark.descriptors import load_descriptors, save_descriptors
from benchmark.errors import BenchmarkError
from benchmark.jobs import load_dataset
from benchmark.metrics import Evaluation, great_circle_m, load_evaluation, metre_metrics
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.runner import run_job
from tests.fixtures_datasets import CITIES, write_vigor
from tests.test_synthetic_vigor import VIGOR_WORLD

R = 6_371_004.0  # VIGOR's Earth radius (metres)
METRE_KEYS = ("acc@1m", "acc@10m", "acc@100m", "median_error_m", "accuracy_curve")


def cosine_law_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle metres by the spherical law of cosines, written out by hand."""
    (p1, l1), (p2, l2) = (tuple(map(math.radians, x)) for x in (a, b))
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(l2 - l1)
    return R * math.acos(min(1.0, c))


def test_great_circle_distance_matches_hand_computations() -> None:
    # one degree along the equator or a meridian is R * pi / 180; a quarter circle R * pi / 2
    pairs = [((0, 0), (0, 1)), ((10, 20), (11, 20)), ((0, 0), (0, 90)), ((0, 0), (90, 0))]
    got = great_circle_m(np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs]))
    np.testing.assert_allclose(got, [R * math.pi / 180] * 2 + [R * math.pi / 2] * 2, rtol=1e-12)
    new_york, chicago = (40.7309416656, -73.9953203614), (41.887485897337505, -87.64890082900035)
    far = great_circle_m(np.array([new_york]), np.array([chicago]))[0]
    # the cosine form is exact to ~1e-9 relative at 1,150 km (float64 acos far from 1)
    assert far == pytest.approx(cosine_law_m(new_york, chicago), rel=1e-9)
    assert 1.14e6 < far < 1.16e6


@pytest.fixture(scope="module")
def vigor_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("VIGOR")
    return root, write_vigor(root)


def test_errors_are_great_circle_distances_even_in_another_city(
    vigor_root: tuple[Path, dict],
) -> None:
    root, info = vigor_root
    split = build_vigor(root, "same-area").test
    panos = [p for c in CITIES for p in info["panos"][c][1::2]]  # the test file's order
    tiles = [t for c in CITIES for t in info["tiles"][c]]  # satellite_list order
    n = split.num_ground
    top1 = split.positives.copy()
    top1[: n // 2] = (split.positives[: n // 2] + 16) % 64  # the same tile 1 city further
    ev = Evaluation(np.zeros(n, int), top1[:, None], np.zeros((n, 1)), split)
    got = metre_metrics(ev)
    expected = [
        cosine_law_m(pano_latlon(p[0]), tile_latlon(tiles[t]))
        for p, t in zip(panos, top1, strict=True)
    ]
    assert got["wrong_city_pct"] == pytest.approx(50.0)
    assert got["median_error_m"] == pytest.approx(float(np.median(expected)), rel=1e-9)
    assert 1e5 < got["median_error_m"] < 5e6  # between real cities, not a 1e7 m convention
    assert got["acc@50m"] == pytest.approx(100 * np.mean(np.array(expected) <= 50))
    # the labelled offsets move each positive tile's centre onto the panorama (names carry
    # 6 decimals of a degree: ~0.1 m), so refined errors vanish where the top-1 is right
    ev.extras["offset"] = split.offsets[:, 0]
    refined = metre_metrics(ev)
    assert refined["offset_refined"] is True and refined["acc@1m"] == pytest.approx(50.0)


def vigor_user(root: Path, results: Path) -> dict[str, Any]:
    return {
        "dataset": "vigor",
        "data_root": root,
        "split": "same-area",
        "epochs": 0,
        "results_dir": results,
        "device": "cpu",
        "model": {"ground_size": [16, 32], "aerial_size": [16, 16], "offset_hidden": 4},
        "profile": False,
        "save_descriptors": True,
    }


def _run(user: dict[str, Any], descriptors: Path | None = None) -> RunResult:
    reg = build_registry()
    return run_job(reg, resolve(reg.model("vigor"), user, quick=True), descriptors=descriptors)


def test_metres_recomputed_from_saved_files_equal_the_run(
    vigor_root: tuple[Path, dict], tmp_path: Path
) -> None:
    user = vigor_user(vigor_root[0], tmp_path)
    first = _run(user)
    assert first.status == "ok", first.error
    assert first.metrics["offset_refined"] is True and "wrong_city_pct" in first.metrics
    reg = build_registry()
    split = load_dataset(reg, resolve(reg.model("vigor"), user, quick=True)).test
    ev = load_evaluation(tmp_path / first.files["retrieval"], split)
    assert ev.extras["offset"].shape == (split.num_ground, 2)
    again = metre_metrics(ev)  # the same arithmetic on the same values: equal, not close
    assert {k: again[k] for k in METRE_KEYS} == {k: first.metrics[k] for k in METRE_KEYS}
    assert again["wrong_city_pct"] == first.metrics["wrong_city_pct"]

    saved = tmp_path / first.files["descriptors"]
    rescored = _run({**user, "save_descriptors": False}, descriptors=saved)
    assert rescored.status == "ok", rescored.error
    assert rescored.metrics == first.metrics  # the refinement travelled with the descriptors


def test_descriptors_that_cannot_carry_the_refinement_are_refused(
    vigor_root: tuple[Path, dict], tmp_path: Path
) -> None:
    user = vigor_user(vigor_root[0], tmp_path)
    first = _run(user)
    saved = load_descriptors(tmp_path / first.files["descriptors"])
    other_top1 = tmp_path / "other-top1.safetensors"
    shifted = ((saved.top1 + 1) % len(saved.aerial), saved.offset)
    save_descriptors(other_top1, saved.ground, saved.aerial, saved.meta, shifted)
    refused = _run({**user, "results_dir": tmp_path / "a"}, descriptors=other_top1)
    assert refused.status == "failed"
    assert "ranks a different tile first" in refused.error and "eval --weights" in refused.error

    legacy = tmp_path / "legacy.safetensors"
    meta = {k: v for k, v in saved.meta.items() if k != "offset_refinement"}
    tensors = {"ground": saved.ground, "aerial": saved.aerial}
    save_file(tensors, str(legacy), metadata={"benchmark": json.dumps(meta)})
    old = _run({**user, "results_dir": tmp_path / "b"}, descriptors=legacy)
    assert old.status == "failed" and "save them again" in old.error


def test_offsets_are_saved_beside_ranks_on_the_synthetic_world(tmp_path: Path) -> None:
    user = {
        "dataset": "synthetic-vigor",
        "dataset_options": dict(VIGOR_WORLD),
        "epochs": 0,
        "limit": 6,
        "results_dir": tmp_path,
        "device": "cpu",
        "model": {"ground_size": [16, 64], "aerial_size": [32, 32], "offset_hidden": 8},
        "profile": False,
    }
    result = _run(user)
    assert result.status == "ok", result.error
    reg = build_registry()
    split = load_dataset(reg, resolve(reg.model("vigor"), user, quick=True)).test
    ev = load_evaluation(tmp_path / result.files["retrieval"], split)
    again = metre_metrics(ev)
    assert "wrong_city_pct" not in again  # one flat world: planar metres, no cities
    assert {k: again[k] for k in METRE_KEYS} == {k: result.metrics[k] for k in METRE_KEYS}
    with pytest.raises(BenchmarkError, match="another test split"):
        load_evaluation(tmp_path / result.files["retrieval"], split.subset(5))
