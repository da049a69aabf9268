"""Per-run training logs: one row per completed epoch, kept across a resume."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from benchmark.tracking import RunLog, check_trackers


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_log_has_one_row_per_epoch_and_a_resume_rewrites_the_rest(tmp_path: Path) -> None:
    stem = tmp_path / "synthetic-test__safa-tiny-quick-seed0"
    log = RunLog(stem)
    for epoch in (1, 2, 3):
        log(epoch, {"epoch": epoch, "loss": 1.0 / epoch, "lr": 1e-3})
    # the checkpoint was written after epoch 2: the resumed run trains epoch 3 again
    again = RunLog(stem)
    again(3, {"epoch": 3, "loss": 0.25, "lr": 1e-3, "val_R@1": 12.5})
    rows = _rows(tmp_path / (stem.name + ".log.jsonl"))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2] == {"epoch": 3, "loss": 0.25, "lr": 1e-3, "val_R@1": 12.5}
    with (tmp_path / (stem.name + ".log.csv")).open() as f:
        table = list(csv.DictReader(f))
    assert [r["epoch"] for r in table] == ["1", "2", "3"]
    assert table[0]["val_R@1"] == "" and table[2]["val_R@1"] == "12.5"


def test_a_line_cut_by_a_crash_is_logged_again(tmp_path: Path) -> None:
    stem = tmp_path / "run"
    (tmp_path / "run.log.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n{"epoch": 2, "lo')
    RunLog(stem)(2, {"epoch": 2, "loss": 0.4})
    assert [r["epoch"] for r in _rows(tmp_path / "run.log.jsonl")] == [1, 2]


def test_unknown_or_missing_tracker_is_refused_before_any_work() -> None:
    with pytest.raises(BenchmarkError, match="Unknown tracker 'wandb'"):
        check_trackers(["wandb"])
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(BenchmarkError, match="pip install tensorboard"):
            check_trackers(["tensorboard"])
    else:
        check_trackers(["tensorboard"])


def test_a_run_writes_its_log_beside_its_result(tiny_run: dict) -> None:
    from benchmark.config import resolve
    from benchmark.registry import build_registry
    from benchmark.runner import run_job

    reg = build_registry()
    result = run_job(reg, resolve(reg.model("safa"), tiny_run, quick=True))
    assert result.status == "ok", result.error
    (log,) = Path(tiny_run["results_dir"]).glob("*.log.jsonl")
    rows = _rows(log)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["loss"] for r in rows] == [h["loss"] for h in result.training["history"]]
    assert "val_R@1" in rows[0]  # the quick regime selects on a validation split
    assert log.name.startswith(result.stem())
