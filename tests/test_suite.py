"""Experiment suites: the committed board's experiment as data, resumable runs, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark import results
from benchmark.cli import main
from benchmark.identity import run_identity
from benchmark.jobs import plan as plan_job
from benchmark.registry import build_registry
from benchmark.suite import (
    Run,
    Suite,
    choose,
    config,
    load_suite,
    plan,
    run_suite,
    tuned_methods,
    tuning_plan,
)
from tests.conftest import TINY_WORLD

ROOT = Path(__file__).resolve().parent.parent
BOARD = ROOT / "leaderboard"


def test_the_committed_suite_plans_exactly_the_committed_results() -> None:
    """Every committed result is a run of the committed suite (its tuning runs, then every
    run with the setting chosen from them), under its exact settings and identity (an
    evaluation's weights enter its identity by their recorded content hash)."""
    reg = build_registry()
    suite = load_suite(BOARD / "suites" / "synthetic.yaml")
    tuning = tuning_plan(suite, {})
    chosen, failed = choose(reg, suite, tuning)
    assert not failed and set(chosen) == set(tuned_methods(suite))
    planned = [
        (run, protocol)
        for run in tuning + plan(suite, {}, chosen)
        for protocol in (None, *run.protocols)
    ]
    committed = sorted((BOARD / "results").glob("*.json"))
    assert len(planned) == len(committed)
    for path in committed:
        recorded = results.load(path)
        protocol = None if recorded.protocol == "aligned" else recorded.protocol
        weights = recorded.parent is not None
        configs = [config(reg, run, p, weights) for run, p in planned if p == protocol]
        matches = [c for c in configs if c.model_dump(mode="json") == recorded.config]
        assert len(matches) == 1, path.name
        job = plan_job(reg, matches[0])
        inputs = recorded.identity.get("inputs", {})
        identity = run_identity(matches[0], job.options, job.split, inputs)
        assert identity.settings == recorded.identity, path.name
        assert f"{identity.stem}.json" == path.name


def test_a_default_run_is_the_boards_run_of_each_tuned_method() -> None:
    """Each tuned method's quick settings hold the point its search on the committed board
    chose, so `python -m benchmark run --plugins METHOD` reproduces its row."""
    reg = build_registry()
    suite = load_suite(BOARD / "suites" / "synthetic.yaml")
    chosen, _ = choose(reg, suite, tuning_plan(suite, {}))
    assert suite.tuning is not None and set(chosen) == set(tuned_methods(suite))
    for method, point in chosen.items():
        default = config(reg, Run(method, {}, quick=True, protocols=()))
        assert {k: getattr(default, k) for k in point} == point, method


def _tiny_suite(tmp_path: Path) -> Suite:
    return Suite(
        results_dir=tmp_path / "results",
        regime="quick",
        seeds=[0],
        protocols=["fov=90"],
        settings={"device": "cpu", "epochs": 1, "batch_size": 8, "profile": False},
        groups=[
            {
                "methods": ["safa", "raw-pixels"],
                "settings": {"dataset_options": dict(TINY_WORLD)},
            }
        ],
    )


def test_a_suite_runs_its_protocol_evaluations_on_the_checkpoint_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = build_registry()
    suite = _tiny_suite(tmp_path)
    assert run_suite(reg, suite, {}) == 0
    folder = tmp_path / "results"

    def made() -> dict[tuple[str, str], tuple[Path, results.RunResult]]:
        found = {p: results.load(p) for p in folder.glob("*.json")}
        return {(r.plugin, r.protocol): (p, r) for p, r in found.items()}

    first = made()
    assert len(first) == 4 and all(r.status == "ok" for _, r in first.values())
    safa_path, safa = first[("safa", "aligned")]
    evaluation_path, evaluation = first[("safa", "fov=90")]
    assert evaluation.parent == safa_path.stem
    assert evaluation.config["epochs"] == 0 and evaluation.config["profile"] is False
    # the model its metrics were measured with: the epoch chosen on validation
    assert Path(evaluation.training["weights"]) == Path(safa.training["selected_weights"])
    _, pixels = first[("raw-pixels", "fov=90")]
    assert pixels.parent is None and pixels.config["epochs"] == 1  # nothing to evaluate: run
    capsys.readouterr()

    evaluation_path.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert run_suite(reg, suite, {}) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 3 and out.count(": running") == 1
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert {k: after[k] for k in before} == before  # the results already there are untouched
    again_path, again = made()[("safa", "fov=90")]
    assert again_path == evaluation_path  # the same run: the same name
    assert again.metrics == evaluation.metrics and again.parent == evaluation.parent

    shutil.rmtree(folder / "checkpoints")  # as a fresh clone has them: not at all
    capsys.readouterr()
    assert run_suite(reg, suite, {}) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 4 and ": running" not in out


def test_tuning_scores_every_grid_point_on_validation_and_runs_the_best_on_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each point of the grid trains on the training pairs less the validation split and is
    evaluated on that split only; the test run uses the point with the best validation R@1,
    which the suite's plan then names for every seed."""
    reg = build_registry()
    suite = _tiny_suite(tmp_path).model_dump()
    suite.update(protocols=[], tuning={"seed": 0, "grid": {"lr": [1e-6, 3e-3]}})
    world = suite["groups"][0]["settings"]
    suite["groups"] = [
        {"methods": ["safa"], "settings": world},
        {"methods": ["raw-pixels"], "settings": world, "tune": False},
    ]
    suite = Suite.model_validate(suite)
    assert run_suite(reg, suite, {}) == 0
    found = [results.load(p) for p in (tmp_path / "results").glob("*.json")]
    tuning = sorted((r for r in found if r.split == "validation"), key=lambda r: r.config["lr"])
    tested = [r for r in found if r.split == "test"]
    assert [(r.plugin, r.config["lr"]) for r in tuning] == [("safa", 1e-6), ("safa", 3e-3)]
    validation = tuning[0].training["validation"]
    for r in tuning:  # scored on the carved validation split: its panoramas, its gallery
        assert r.status == "ok" and r.metrics["queries"] == validation["pairs"]
        assert r.metrics["R@1"] == max(h["val_R@1"] for h in r.training["history"])
    best = max(tuning, key=lambda r: (r.metrics["R@1"], r.metrics["R@5"], -r.config["lr"]))
    assert {(r.plugin, r.config["lr"]) for r in tested} == {
        ("safa", best.config["lr"]),
        ("raw-pixels", 1e-3),  # not tuned: no training to tune
    }
    assert sum(r.plugin == "safa" for r in tested) == 1


def test_a_validation_split_needs_a_run_that_carves_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--plugins", "safa", "--split", "validation", "--epochs", "0"]
    assert main([*args, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "split=validation" in err and "epochs > 0" in err and "Traceback" not in err


def _suite_file(tmp_path: Path, **over: Any) -> Path:
    data: dict[str, Any] = {
        "results_dir": str(tmp_path / "r"),
        "regime": "quick",
        "groups": [{"methods": ["safa"]}],
    }
    data.update(over)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"seed": [0]}, "seed: Extra inputs are not permitted"),
        ({"groups": [{"methods": ["safaa"]}]}, "Unknown method 'safaa'. Did you mean 'safa'?"),
        ({"settings": {"epoch": 3}}, "Unknown setting 'epoch'. Did you mean 'epochs'"),
        ({"protocols": ["fov=0"]}, "a field of view is 1 to 360 degrees"),
        ({"groups": []}, "groups: List should have at least 1 item"),
    ],
)
def test_a_wrong_suite_is_one_clear_error_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], over: dict[str, Any], message: str
) -> None:
    assert main(["suite", str(_suite_file(tmp_path, **over))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_dry_run_lists_every_result_and_whether_it_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _suite_file(tmp_path, seeds=[0, 1], protocols=["unknown-orientation"])
    assert main(["suite", str(file), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.endswith("(to run)") for line in lines)
    assert lines[2].startswith("safa seed 1 aligned: ")
    path = Path(lines[2].removeprefix("safa seed 1 aligned: ").removesuffix(" (to run)"))
    done = results.RunResult(
        plugin="safa", variant="tiny", regime="quick", dataset="synthetic", split="test", seed=1,
        status="ok", config={},
    )  # fmt: skip
    results.dump(done, path)  # as the run would have left it
    assert main(["suite", str(file), "--dry-run"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[2].endswith("(ok)")
    assert all(line.endswith("(to run)") for line in (again[0], again[1], again[3]))
