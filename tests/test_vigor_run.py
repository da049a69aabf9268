"""VIGOR end to end on the synthetic VIGOR world: staged hybrid loss, mining, metre metrics."""

from __future__ import annotations

from pathlib import Path

from benchmark.config import resolve
from benchmark.registry import build_registry
from benchmark.runner import run_job
from tests.test_synthetic_vigor import VIGOR_WORLD


def test_tiny_vigor_trains_in_two_stages_with_mining_and_reports_metres(tmp_path: Path) -> None:
    reg = build_registry()
    user = {
        "dataset": "synthetic-vigor",
        "split": "same-area",
        "dataset_options": dict(VIGOR_WORLD),
        "epochs": 2,
        "batch_size": 4,
        "loss_options": {"stage1_epochs": 1},
        "mining": True,
        "results_dir": tmp_path,
        "device": "cpu",
        "model": {"ground_size": [16, 64], "aerial_size": [32, 32], "offset_hidden": 8},
        "profile": False,
    }
    result = run_job(reg, resolve(reg.model("vigor"), user, quick=True))
    assert result.status == "ok", result.error
    assert result.config["loss"] == "vigor-hybrid" and result.config["mining"] is True
    assert result.training["epochs_completed"] == 2
    m = result.metrics
    assert {"R@1", "hit_rate", "acc@10m", "median_error_m", "accuracy_curve"} <= set(m)
    assert m["offset_refined"] is True
    assert m["hit_rate"] >= m["R@1"]
    assert len(m["accuracy_curve"]["accuracy"]) == 499
