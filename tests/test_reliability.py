"""Nothing is lost: SIGINT/SIGTERM stop cleanly, SIGKILL at any point resumes to the same
metrics as an uninterrupted run (bitwise on CPU), a full disk leaves no partial file."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmark import checkpoint, faults, hookspecs
from benchmark import registry as registry_module
from benchmark.cli import main
from benchmark.hookspecs import hookimpl
from benchmark.model import CrossViewModel
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.specs import ModelOptions, ModelSpec
from plugins.safa import SPEC as SAFA
from tests.conftest import TINY_WORLD

LIMIT, BATCH = 12, 4
STEPS_PER_EPOCH = LIMIT // BATCH


def run_args(results: Path, *extra: str) -> list[str]:
    """A two-epoch tiny SAFA run on the tiny synthetic world."""
    world = [f"dataset_options.{k}={json.dumps(v)}" for k, v in TINY_WORLD.items()]
    return [
        "run", "--plugins", "safa", "--epochs", "2", "--batch-size", str(BATCH), "--limit",
        str(LIMIT), "--device", "cpu", "--results-dir", str(results), "--set", "profile=false",
        *[a for kv in world for a in ("--set", kv)], *extra,
    ]  # fmt: skip


def result_of(results: Path) -> RunResult:
    """The one result file under RESULTS."""
    (path,) = results.glob("*.json")
    return RunResult.model_validate_json(path.read_text())


def ckpt_root(results: Path) -> Path:
    """The checkpoint folder of the one job under RESULTS."""
    (root,) = [p for p in (results / "checkpoints").iterdir() if p.is_dir()]
    return root


def in_process(args: list[str], fault: str | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the CLI in this process with the fault hook set to FAULT (or unset)."""
    faults.reset()
    if fault is None:
        monkeypatch.delenv(faults.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(faults.VARIABLE, fault)
    return main(args)


def child_run(args: list[str], fault: str) -> int:
    """Run the CLI in a forked child process with the fault hook set to FAULT; its exit
    status (negative: killed by that signal). Forking skips a fresh interpreter's imports."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.environ[faults.VARIABLE] = fault
            faults.reset()
            code = main(args)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 300
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child run with {fault} hung")
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(done[1])


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """One intra-op thread: identical arithmetic in this process and its children, and no
    OpenMP spinning on a shared machine (10x faster here under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The uninterrupted run every resumed run must match."""
    results = tmp_path_factory.mktemp("straight")
    faults.reset()
    os.environ.pop(faults.VARIABLE, None)
    assert main(run_args(results)) == 0
    return result_of(results)


def assert_same_run(resumed: RunResult, straight: RunResult) -> None:
    """Bitwise-equal metrics and loss history (CPU, same seed)."""
    assert resumed.status == "ok", resumed.error
    assert resumed.metrics == straight.metrics
    assert resumed.training["history"] == straight.training["history"]


@pytest.mark.parametrize(
    ("fault", "code", "name", "stop"),
    [
        ("train-step:2:sigint", 130, "SIGINT", (0, 2)),
        (f"train-step:{STEPS_PER_EPOCH + 2}:sigterm", 143, "SIGTERM", (1, 2)),
    ],
    ids=["sigint-epoch1", "sigterm-epoch2"],
)
def test_signal_checkpoints_marks_interrupted_and_resumes_exactly(
    tmp_path: Path,
    straight: RunResult,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    fault: str,
    code: int,
    name: str,
    stop: tuple[int, int],
) -> None:
    args = run_args(tmp_path)
    assert in_process(args, fault, monkeypatch) == code
    err = capsys.readouterr().err
    assert f"Stopped by {name}" in err and "--resume" in err and "Traceback" not in err
    stopped = result_of(tmp_path)
    assert stopped.status == "interrupted" and "--resume" in stopped.error
    assert stopped.training["epochs_completed"] == stop[0] and not stopped.metrics
    ckpt = checkpoint.latest(ckpt_root(tmp_path))
    assert (ckpt.epoch, ckpt.step) == stop
    assert in_process([*args, "--resume"], None, monkeypatch) == 0
    resumed = result_of(tmp_path)
    assert (resumed.training["resumed_from"], resumed.training["resumed_step"]) == stop
    assert_same_run(resumed, straight)


def test_sigkill_anywhere_then_resume_matches_uninterrupted(
    tmp_path: Path, straight: RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = run_args(tmp_path)
    root = tmp_path / "checkpoints"

    # killed during epoch 2: epoch 1's checkpoint survives, no result is written
    assert child_run(args, f"train-step:{STEPS_PER_EPOCH + 2}") == -signal.SIGKILL
    assert not list(tmp_path.glob("*.json"))
    assert checkpoint.latest(ckpt_root(tmp_path)).epoch == 1

    # killed half-way through writing epoch 2's checkpoint: the partial one is ignored
    assert child_run([*args, "--resume"], "checkpoint-write:1") == -signal.SIGKILL
    partial = list(root.rglob(".epoch-*.partial"))
    assert partial and (partial[0] / "model.safetensors").is_file()
    assert checkpoint.latest(ckpt_root(tmp_path)).epoch == 1

    # killed during evaluation: training is complete and checkpointed
    assert child_run([*args, "--resume"], "evaluate:1") == -signal.SIGKILL
    assert checkpoint.latest(ckpt_root(tmp_path)).epoch == 2
    assert not list(root.rglob(".epoch-*.partial"))

    assert in_process([*args, "--resume"], None, monkeypatch) == 0
    resumed = result_of(tmp_path)
    assert resumed.training["resumed_from"] == 2
    assert_same_run(resumed, straight)


def test_mining_run_resumes_mid_epoch_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mining cache and the epoch's mined lists are checkpointed with the weights."""
    args = run_args(tmp_path / "stopped", "--epochs", "3", "--set", "mining=true")
    straight = run_args(tmp_path / "straight", "--epochs", "3", "--set", "mining=true")
    assert in_process(straight, None, monkeypatch) == 0
    stop = f"train-step:{2 * STEPS_PER_EPOCH + 1}:sigterm"  # in epoch 3, after a refresh
    assert in_process(args, stop, monkeypatch) == 143
    assert in_process([*args, "--resume"], None, monkeypatch) == 0
    resumed = result_of(tmp_path / "stopped")
    assert (resumed.training["resumed_from"], resumed.training["resumed_step"]) == (2, 1)
    assert_same_run(resumed, result_of(tmp_path / "straight"))


def test_result_records_what_a_rerun_needs_to_compare(straight: RunResult) -> None:
    env = straight.env
    assert env["seeds"] == {"python": 0, "numpy": 0, "torch": 0, "shuffle": 0}
    assert env["deterministic"] is True and env["deterministic_algorithms"] is True
    for library in ("python", "torch", "timm", "numpy", "pillow", "safetensors", "faiss"):
        assert env[library], library
    assert straight.harness_version and straight.config["seed"] == 0


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("checkpoint-write:1:enospc", "Could not write the checkpoint"),
        ("write:1:enospc", "No space left on device"),
    ],
    ids=["checkpoint", "result-file"],
)
def test_full_disk_is_a_clear_message_and_leaves_no_partial_file(
    tmp_path: Path, fault: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = run_args(tmp_path, "--epochs", "1")
    code = in_process(args, fault, monkeypatch)
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and "No space left on device" in err and "Traceback" not in err
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers
    for path in tmp_path.glob("*.json"):  # only complete files, each naming the problem
        assert RunResult.model_validate_json(path.read_text()).status == "failed"


def failing(where: str) -> ModelSpec:
    """SAFA, renamed, raising at build or during evaluation (not while training)."""

    def build(opts: ModelOptions) -> CrossViewModel:
        if where == "build":
            raise RuntimeError("injected build failure")
        model = SAFA.build(opts)
        embed = model.embed_aerial

        def embed_aerial(x: torch.Tensor) -> torch.Tensor:
            if torch.is_inference_mode_enabled():
                raise RuntimeError("injected evaluation failure")
            return embed(x)

        model.embed_aerial = embed_aerial
        return model

    return dataclasses.replace(SAFA, name=f"broken-{where}", build=build)


class Broken:
    """A plugin whose models fail at build and at evaluation."""

    @hookimpl
    def benchmark_models(self) -> list[ModelSpec]:
        """The two failing models."""
        return [failing("build"), failing("evaluate")]


def test_plugins_failing_at_import_build_or_evaluation_do_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(registry_module.ALLOW_ENV, "core,safa,broken-import")
    group = hookspecs.ENTRY_POINT_GROUP
    missing = metadata.EntryPoint("broken-import", "cvgl_no_such_module", group)
    installed = registry_module._entry_points()
    monkeypatch.setattr(registry_module, "_entry_points", lambda: [*installed, missing])
    reg = build_registry(extra=[("broken", Broken())])
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    args = run_args(tmp_path, "--epochs", "1")
    args[args.index("safa")] = "broken-import,broken-build,broken-evaluate,safa"
    assert in_process(args, None, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    found = [RunResult.model_validate_json(p.read_text()) for p in tmp_path.glob("*.json")]
    by_plugin = {r.plugin: r for r in found}
    assert by_plugin["safa"].status == "ok" and by_plugin["safa"].metrics["R@1"] >= 0
    expected = {
        "broken-import": "failed to import (ModuleNotFoundError",
        "broken-build": "injected build failure",
        "broken-evaluate": "injected evaluation failure",
    }
    for plugin, message in expected.items():
        assert by_plugin[plugin].status == "failed" and message in by_plugin[plugin].error
        assert message in err
    assert by_plugin["broken-evaluate"].training["epochs_completed"] == 1
