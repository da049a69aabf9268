"""A result describes exactly the run that made it: every outcome-relevant setting is in the
run's identity (and nothing else is), results, checkpoints and locks are keyed by it,
--resume continues only the same run, a failure never replaces a good record, and one
process writes a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from benchmark import results
from benchmark.cli import main
from benchmark.config import resolve
from benchmark.identity import differences
from benchmark.io import RunLock
from benchmark.jobs import Job, plan
from benchmark.registry import build_registry
from benchmark.results import RunResult
from tests.conftest import TINY_WORLD, in_process

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reg():
    return build_registry()


def job_of(reg, user: dict[str, Any], **inputs: Path) -> Job:
    """The planned quick-regime SAFA job of USER settings."""
    return plan(reg, resolve(reg.model("safa"), user, quick=True), **inputs)


BASE: dict[str, Any] = {"dataset_options": dict(TINY_WORLD), "epochs": 2, "limit": 8}


@pytest.mark.parametrize(
    "change",
    [
        {"limit": 12},
        {"limit": None},
        {"dataset_options": {**TINY_WORLD, "n_train": 40}},
        {"dataset": "synthetic-vigor", "dataset_options": {}},
        {"epochs": 3},
        {"lr": 0.5},
        {"batch_size": 4},
        {"optimizer": "sgd"},
        {"loss": "infonce"},
        {"loss_options": {"alpha": 5.0}},
        {"sam_rho": 0.05},
        {"mining": True},
        {"seed": 1},
        {"deterministic": False},
        {"protocol": "fov=90"},
        {"protocol_seed": 3},
        {"topk": 5},
        {"metrics": ["recall"]},
        {"retrieval": "torch"},
        {"model": {"heads": 4}},
        {"model": {"channel_pool": "mean"}},
        {"variant": "paper"},
    ],
    ids=lambda change: ",".join(change),
)
def test_every_outcome_setting_changes_the_identity(reg, change: dict[str, Any]) -> None:
    base, other = job_of(reg, BASE), job_of(reg, {**BASE, **change})
    assert other.identity.stem != base.identity.stem
    assert other.result_path != base.result_path
    assert differences(other.identity.settings, base.identity.settings)


@pytest.mark.parametrize(
    "change",
    [
        {"device": "cpu"},
        {"workers": 3},
        {"eval_batch_size": 7},
        {"eval_memory_mb": 64},
        {"results_dir": "/elsewhere"},
        {"save_descriptors": True},
        {"profile": False},
        {"model": {"heads": 8}},  # SAFA's own value: the same model
        {"split": "test"},  # the synthetic world's default split, named
    ],
    ids=lambda change: ",".join(change),
)
def test_infrastructure_and_defaults_keep_the_identity(reg, change: dict[str, Any]) -> None:
    assert job_of(reg, {**BASE, **change}).identity.digest == job_of(reg, BASE).identity.digest


def test_checkpoints_are_shared_by_protocols_not_by_training_settings(reg) -> None:
    aligned, fov = job_of(reg, BASE), job_of(reg, {**BASE, "protocol": "fov=90"})
    assert aligned.ckpt_dir == fov.ckpt_dir and aligned.result_path != fov.result_path
    assert fov.identity.name.endswith("-seed0-fov90")
    assert job_of(reg, {**BASE, "limit": 12}).ckpt_dir != aligned.ckpt_dir


def test_data_root_is_part_of_the_identity_as_an_absolute_path(
    reg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = job_of(reg, {**BASE, "data_root": "data"})
    absolute = job_of(reg, {**BASE, "data_root": str(tmp_path / "data")})
    elsewhere = job_of(reg, {**BASE, "data_root": str(tmp_path / "other")})
    assert relative.identity.digest == absolute.identity.digest != elsewhere.identity.digest
    assert absolute.identity.settings["data_root"] == str(tmp_path / "data")


def test_input_files_count_by_content(reg, tmp_path: Path) -> None:
    tensors = {"w": torch.zeros(2)}
    for name in ("a.safetensors", "copy.safetensors"):
        save_file(tensors, str(tmp_path / name))
    save_file({"w": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    user = {**BASE, "epochs": 0}
    a = job_of(reg, user, weights=tmp_path / "a.safetensors")
    copy = job_of(reg, user, weights=tmp_path / "copy.safetensors")
    other = job_of(reg, user, weights=tmp_path / "other.safetensors")
    assert a.identity.digest == copy.identity.digest != other.identity.digest
    assert a.identity.digest != job_of(reg, user).identity.digest
    assert len(a.identity.settings["inputs"]["weights"]) == 64


def test_identity_does_not_depend_on_the_process() -> None:
    """The hash is of canonical JSON: another interpreter (other hash seed) agrees."""
    code = (
        "from benchmark.config import resolve; from benchmark.jobs import plan; "
        "from benchmark.registry import build_registry; r = build_registry(); "
        "print(plan(r, resolve(r.model('safa'), {'limit': 8, 'model': {'heads': 4}}, "
        "quick=True)).identity.stem)"
    )
    stems = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(stems) == 1 and stems.pop().startswith("synthetic-test__safa-tiny-quick-seed0-")


def test_results_written_before_run_identities_keep_their_names(tmp_path: Path) -> None:
    """A result file from before run identities (schema 1, no run_id) loads, and its name is
    derived as it was then, so older folders keep working."""
    old = {
        "plugin": "safa", "variant": "tiny", "regime": "quick", "dataset": "synthetic",
        "split": "test", "seed": 0, "protocol": "fov=90", "options_tag": "-opts1a2b3c4d",
        "status": "ok", "metrics": {"R@1": 40.0}, "config": {"epochs": 6},
    }  # fmt: skip
    path = tmp_path / "synthetic-test__safa-tiny-quick-seed0-opts1a2b3c4d-fov90.json"
    path.write_text(json.dumps(old))
    result = results.load(path)
    assert result.run_id == "" and result.filename() == path.name


def test_differences_name_each_setting() -> None:
    ours = {"limit": None, "model": {"heads": 8, "dropout": 0.2}, "lr": 0.1}
    theirs = {"limit": 8, "model": {"heads": 8, "dropout": 0.0}}
    assert differences(ours, theirs) == [
        "limit: 8 there, None here",
        "lr: unset there, 0.1 here",
        "model.dropout: 0.0 there, 0.2 here",
    ]


# ---- end to end, in this process: the tiny world, 8 pairs, batches of 4 -----------------


def args_for(results_dir: Path, *extra: str, command: str = "run") -> list[str]:
    """A tiny SAFA run (2 epochs of 2 steps) on the tiny world, or its evaluation."""
    world = [f"dataset_options.{k}={json.dumps(v)}" for k, v in TINY_WORLD.items()]
    training = ["--epochs", "2", "--batch-size", "4"] if command == "run" else []
    return [
        command, "--plugins", "safa", *training, "--limit", "8",
        "--device", "cpu", "--results-dir", str(results_dir), "--set", "profile=false",
        "--set", "selection=last", "--set", "val_fraction=0",
        *[a for kv in world for a in ("--set", kv)], *extra,
    ]  # fmt: skip


def records(folder: Path) -> dict[str, RunResult]:
    """Every JSON record in FOLDER by file name."""
    return {p.name: RunResult.model_validate_json(p.read_text()) for p in folder.glob("*.json")}


def test_a_failure_never_replaces_an_ok_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = args_for(tmp_path, "--epochs", "0")
    assert in_process(args, None, monkeypatch) == 0
    ((name, good),) = records(tmp_path).items()
    before = (tmp_path / name).read_bytes()

    # a typo in --weights: found before any work, nothing written
    typo = args_for(tmp_path, "--weights", str(tmp_path / "typo.safetensors"), command="eval")
    assert in_process(typo, None, monkeypatch) == 2
    assert "typo.safetensors' does not exist" in capsys.readouterr().err
    assert (tmp_path / name).read_bytes() == before

    # the same run again, failing (a full disk while extracting): its record goes beside
    args = [*args, "--overwrite"]
    assert in_process(args, "evaluate:1:enospc", monkeypatch) == 1
    found = records(tmp_path)
    stem = name.removesuffix(".json")
    assert (tmp_path / name).read_bytes() == before
    assert found[f"{stem}.failed.json"].status == "failed"
    assert "No space left on device" in found[f"{stem}.failed.json"].error
    assert "ok result" in capsys.readouterr().out
    assert [r.status for r in results.read_all(tmp_path)[0].values()] == ["ok"]  # not a second run

    # an interrupted attempt likewise; a later ok run clears the attempts
    assert in_process(args, "evaluate:1:sigterm", monkeypatch) == 143
    assert records(tmp_path)[f"{stem}.interrupted.json"].status == "interrupted"
    assert in_process(args, None, monkeypatch) == 0
    assert set(records(tmp_path)) == {name} and good.status == "ok"


def test_resume_continues_only_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = args_for(tmp_path)
    assert in_process(args, "train-step:3:sigint", monkeypatch) == 130  # in epoch 2 of 2
    capsys.readouterr()
    checkpoints = sorted((tmp_path / "checkpoints").rglob("*"))
    cases = [
        (["--limit", "12"], "limit: 8 there, 12 here"),
        (["--epochs", "3"], "epochs: 2 there, 3 here"),
        (["--lr", "0.5"], "lr: 0.003 there, 0.5 here"),  # SAFA's quick lr
        (["--set", "model.dropout=0"], "model.dropout: 0.2 there, 0.0 here"),
    ]
    for extra, message in cases:
        assert in_process([*args, *extra, "--resume"], None, monkeypatch) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "--resume continues only the same run" in err
        assert "Traceback" not in err
    assert sorted((tmp_path / "checkpoints").rglob("*")) == checkpoints  # untouched
    assert [r.status for r in records(tmp_path).values()] == ["interrupted"]

    # infrastructure may change: another eval memory and loader are the same run
    resumed = [*args, "--resume", "--eval-memory", "64", "--workers", "0"]
    assert in_process(resumed, None, monkeypatch) == 0
    (result,) = [r for r in records(tmp_path).values() if r.status == "ok"]
    assert (result.training["resumed_from"], result.training["resumed_step"]) == (1, 1)
    assert (
        result.config["epochs"] == 2 and result.config["lr"] == 3e-3
    )  # what was applied (SAFA's quick lr)

    # the run is done: the same command again would start it over, so it is refused
    assert in_process(args, None, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "--skip-existing" in err and "--overwrite" in err and "--resume" in err


def test_an_ok_result_is_kept_unless_a_flag_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = args_for(tmp_path, "--epochs", "0")
    assert in_process([*args, "--format", "json"], None, monkeypatch) == 0
    out = capsys.readouterr()
    (entry,) = json.loads(out.out)  # stdout holds the JSON only; the human lines go to stderr
    path = Path(entry["path"])
    assert entry["skipped"] is False and entry["result"]["status"] == "ok"
    assert entry["result"] == json.loads(path.read_text()) and "== safa" in out.err
    before = path.read_bytes()

    assert in_process(args, None, monkeypatch) == 2  # refused before any work
    err = capsys.readouterr().err
    assert f"The ok result {path} of this run already exists" in err and "Traceback" not in err
    assert (
        "--skip-existing" in err and "--overwrite" in err and "--resume" not in err
    )  # no training
    assert path.read_bytes() == before

    assert in_process([*args, "--skip-existing", "--format", "json"], None, monkeypatch) == 0
    (kept,) = json.loads(capsys.readouterr().out)
    assert kept["skipped"] is True and kept["result"] == entry["result"]
    assert path.read_bytes() == before

    assert in_process([*args, "--overwrite"], None, monkeypatch) == 0
    assert "R@1" in capsys.readouterr().out
    assert RunResult.model_validate_json(path.read_text()).status == "ok"


def test_resume_refuses_a_checkpoint_folder_without_an_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    legacy = tmp_path / "checkpoints" / "synthetic-test__safa-tiny-quick-seed0" / "epoch-00001"
    legacy.mkdir(parents=True)
    assert in_process([*args_for(tmp_path), "--resume"], None, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "written before runs had identities" in err and str(legacy.parent) in err
    assert not records(tmp_path)


def test_one_writer_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = args_for(tmp_path, "--epochs", "0")
    assert main(["config", "show", *args[1:], "--format", "json"]) == 0
    stem = json.loads(capsys.readouterr().out)[0]["identity"]
    lock = tmp_path / f"{stem}.lock"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # another process holds the run, then is killed
        try:
            RunLock(lock, "the run")
            os.write(write, b"held")
            time.sleep(300)
        finally:
            os._exit(0)
    try:
        assert os.read(read, 4) == b"held"
        assert in_process(args, None, monkeypatch) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {pid}" in err and "Traceback" not in err
        assert not records(tmp_path)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert lock.exists()  # the killed holder left its file, but not its lock
    assert in_process(args, None, monkeypatch) == 0
    assert not lock.exists() and [r.status for r in records(tmp_path).values()] == ["ok"]


def test_infrastructure_settings_never_split_a_leaderboard_row(tmp_path: Path) -> None:
    """Rows are told apart by outcome settings only, derived from the roles: two seeds that
    differ in where and how fast they ran are one row with two seeds."""
    from benchmark.config import RunConfig, fields_with_role
    from benchmark.leaderboard.frame import settings

    def run(seed: int, **infra: Any) -> RunResult:
        config = RunConfig(plugin="safa", seed=seed, **infra).model_dump(mode="json")
        return RunResult(
            plugin="safa", variant="tiny", regime="quick", dataset="synthetic", split="test",
            seed=seed, status="ok", config=config, metrics={"R@1": 10.0 + seed},
            training={"epochs_completed": 1},
        )  # fmt: skip

    infra = {"eval_memory_mb": 64, "save_descriptors": True, "workers": 2, "device": "cpu"}
    a, b = run(0), run(1, **infra)
    assert settings(a) == settings(b)
    assert not set(fields_with_role("infrastructure")) & set(settings(a))
    assert settings(run(0, lr=0.5)) != settings(a)  # an outcome setting does split rows
    # the page itself: tests/test_leaderboard_inputs.py renders such runs as one row
