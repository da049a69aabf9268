"""`results`: list the runs of a folder and compare two side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import results
from benchmark.browse import compare_runs, list_runs
from benchmark.errors import BenchmarkError


def _result(seed: int, lr: float, r1: float, finished: str) -> results.RunResult:
    return results.RunResult(
        plugin="safa",
        variant="tiny",
        regime="quick",
        dataset="synthetic",
        split="test",
        seed=seed,
        status="ok",
        metrics={"R@1": r1, "R@5": 90.0},
        config={"lr": lr, "epochs": 12, "dataset_options": {"n_train": 2000}},
        finished=finished,
    )


def test_list_shows_each_run_newest_first_and_names_bad_files(tmp_path: Path) -> None:
    results.write(_result(0, 1e-3, 41.8, "2026-01-01T00:00:00+00:00"), tmp_path)
    results.write(_result(1, 1e-3, 47.25, "2026-01-02T00:00:00+00:00"), tmp_path)
    (tmp_path / "broken.json").write_text("{")
    lines = list_runs(tmp_path).splitlines()
    assert "seed1" in lines[2] and "47.25" in lines[2]
    assert "seed0" in lines[3] and "41.80" in lines[3]
    assert "broken.json" in lines[-1]


def test_compare_shows_only_the_settings_that_differ(tmp_path: Path) -> None:
    a = results.write(_result(0, 1e-3, 41.8, "x"), tmp_path)
    b = results.write(_result(1, 3e-4, 47.25, "y"), tmp_path / "other")
    text = compare_runs(tmp_path, a.stem, str(b))
    settings, metrics = text.split("metrics:")
    assert "lr" in settings and "0.0003" in settings
    assert "epochs" not in settings and "n_train" not in settings
    assert "41.8" in metrics and "47.25" in metrics and "R@5" in metrics


def test_compare_names_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="No result 'nope'"):
        compare_runs(tmp_path, "nope", "nope")
