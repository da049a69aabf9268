"""Nothing is lost: SIGINT/SIGTERM stop cleanly, SIGKILL at any point resumes to the same
metrics as an uninterrupted run (bitwise on CPU), a full disk leaves no partial file."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

from benchmark import checkpoint, faults, hookspecs, interrupt
from benchmark import registry as registry_module
from benchmark.cli import main
from benchmark.config import resolve
from benchmark.hookspecs import hookimpl
from benchmark.model import CrossViewModel
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.runner import run_job
from benchmark.specs import ModelOptions, ModelSpec
from plugins.safa import SPEC as SAFA
from tests.conftest import TINY_WORLD, in_process

pytestmark = pytest.mark.usefixtures("one_thread")

LIMIT, BATCH = 14, 4
VALIDATION = 2  # the quick regime holds out 5% of the training pairs, at least 2
STEPS_PER_EPOCH = (LIMIT - VALIDATION) // BATCH


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


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The uninterrupted run every resumed run must match."""
    results = tmp_path_factory.mktemp("straight")
    faults.reset()
    os.environ.pop(faults.VARIABLE, None)
    assert main(run_args(results)) == 0
    return result_of(results)


def assert_same_run(resumed: RunResult, straight: RunResult) -> None:
    """Bitwise-equal metrics, loss and validation history, and the same selected epoch
    (CPU, same seed)."""
    assert resumed.status == "ok", resumed.error
    assert resumed.metrics == straight.metrics
    assert resumed.training["history"] == straight.training["history"]
    assert all("val_R@1" in h for h in straight.training["history"])
    assert resumed.training["selected_epoch"] == straight.training["selected_epoch"]
    assert resumed.training.get("final_metrics") == straight.training.get("final_metrics")


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


def test_a_stop_ends_with_its_run_and_later_api_runs_in_the_process_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted CLI run must not leave its stop request behind: a notebook or a test
    that calls run_job afterwards in the same process would be stopped by it at once."""
    assert in_process(run_args(tmp_path / "cli"), "train-step:2:sigint", monkeypatch) == 130
    assert interrupt.requested() is None
    reg = build_registry()
    user = {
        "dataset_options": dict(TINY_WORLD), "epochs": 1, "batch_size": BATCH, "device": "cpu",
        "results_dir": tmp_path / "api", "profile": False,
    }  # fmt: skip
    result = run_job(reg, resolve(reg.model("safa"), user, quick=True))
    assert result.status == "ok", result.error


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

    # killed during the test evaluation: training is complete and checkpointed (epoch 2's
    # validation extracts its two views first: extractions 1 and 2)
    assert child_run([*args, "--resume"], "evaluate:3") == -signal.SIGKILL
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
    ("fault", "epochs", "message"),
    [
        ("checkpoint-write:1:enospc", "1", "Could not write the checkpoint"),
        ("write:1:enospc", "1", "identity.json"),
        ("write:1:enospc", "0", "Could not write retrieval files"),
    ],
    ids=["checkpoint", "checkpoint-identity", "retrieval-file"],
)
def test_full_disk_is_a_clear_message_and_leaves_no_partial_file(
    tmp_path: Path, fault: str, epochs: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = run_args(tmp_path, "--epochs", epochs)
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
    # no validation split: it would evaluate the broken model during training
    args = run_args(tmp_path, "--epochs", "1", "--set", "selection=last", "--set", "val_fraction=0")
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


# ---- status and exit code agree --------------------------------------------------------


def test_signal_during_evaluation_is_an_interrupted_run_that_resume_finishes(
    tmp_path: Path, straight: RunResult, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = run_args(tmp_path)
    # evaluate:1 and :2 are the validation extractions after epochs 1 and 2 (selection=best)
    assert in_process(args, "evaluate:3:sigterm", monkeypatch) == 143
    assert "Traceback" not in capsys.readouterr().err
    stopped = result_of(tmp_path)
    assert stopped.status == "interrupted" and not stopped.metrics
    assert "during evaluation" in stopped.error and "epoch-00002" in stopped.error
    assert "--resume" in stopped.error
    assert in_process([*args, "--resume"], None, monkeypatch) == 0
    resumed = result_of(tmp_path)
    assert resumed.training["resumed_from"] == 2  # evaluated again, not trained again
    assert_same_run(resumed, straight)


def test_signal_while_a_result_is_written_keeps_status_and_exit_code_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Write 1 is the ranks file, write 2 the result: the record is complete, so it is ok
    and the process exits 0; a later run does not start, so then it exits 143."""
    one = run_args(tmp_path / "one", "--epochs", "0")
    assert in_process(one, "write:2:sigterm", monkeypatch) == 0
    assert "arrived after the last run had finished" in capsys.readouterr().err
    assert result_of(tmp_path / "one").status == "ok"
    two = run_args(tmp_path / "two", "--epochs", "0")
    two[two.index("safa")] = "safa,cvm-net"
    assert in_process(two, "write:2:sigterm", monkeypatch) == 143
    err = capsys.readouterr().err
    assert "1 later run(s) did not start; run them with --plugins cvm-net" in err
    assert result_of(tmp_path / "two").status == "ok"  # cvm-net has no record


def test_full_disk_while_writing_the_result_keeps_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranks file is removed to make room: the record is never lost to our own files."""
    assert in_process(run_args(tmp_path, "--epochs", "0"), "write:2:enospc", monkeypatch) == 0
    result = result_of(tmp_path)
    assert result.status == "ok" and result.files == {}
    assert "removed to make room" in result.notes[0] and "No space left" in result.notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.filename()]


def child_with_file_limit(args: list[str], limit: int) -> int:
    """Run the CLI in a forked child whose files may not grow past LIMIT bytes
    (RLIMIT_FSIZE): writers fail as on a full disk, with the error types of torch and
    safetensors themselves; its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            faults.reset()
            os.environ.pop(faults.VARIABLE, None)
            code = main(args)
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize(
    ("limit", "error"),
    [(1 << 20, "SafetensorError"), (3 << 20, "RuntimeError")],
    ids=["safetensors", "torch"],
)
def test_full_disk_in_torch_or_safetensors_names_the_last_good_checkpoint(
    tmp_path: Path, straight: RunResult, monkeypatch: pytest.MonkeyPatch, limit: int, error: str
) -> None:
    """The tiny SAFA's weights take ~2.3 MB and its optimizer state ~4.6 MB: a 1 MiB limit
    fails safetensors, a 3 MiB one torch.save."""
    args = run_args(tmp_path)
    assert in_process(args, "train-step:3:sigint", monkeypatch) == 130
    good = checkpoint.latest(ckpt_root(tmp_path))
    assert child_with_file_limit([*args, "--resume"], limit) == 1
    failed = result_of(tmp_path)
    assert failed.status == "failed" and "Could not write the checkpoint" in failed.error
    assert (
        error in failed.error and f"the newest complete checkpoint is {good.path}" in failed.error
    )
    assert not list(tmp_path.rglob(".*partial"))  # the half-written one was removed
    assert checkpoint.latest(ckpt_root(tmp_path)) == good


def test_result_files_get_the_users_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mask, mode in ((0o022, 0o644), (0o077, 0o600)):
        before = os.umask(mask)
        try:
            out = tmp_path / oct(mask)
            args = run_args(out, "--epochs", "0", "--save-descriptors")
            assert in_process(args, None, monkeypatch) == 0
        finally:
            os.umask(before)
        files = [p for p in out.iterdir() if p.is_file()]
        assert len(files) == 3  # result, ranks, descriptors
        assert {p.stat().st_mode & 0o777 for p in files} == {mode}


# ---- a process blocked in I/O still stops ----------------------------------------------


class Blocking:
    """The tiny synthetic world as 'blocking-world', whose image reads block (on a FIFO no
    one writes) from the AFTER-th read of one view on, and a loss 'blocking-loss' that
    blocks in its first call; each writes MARKER just before it blocks."""

    def __init__(self, tmp: Path, view: str = "", after: int = 0, block: str = "") -> None:
        self.fifo, self.marker = tmp / "fifo", tmp / "blocked"
        os.mkfifo(self.fifo)
        self.view, self.after, self.block = view, after, block
        self.reads = 0

    def wait(self) -> None:
        """Write the marker, then block on the FIFO (or, 'stuck': in a main thread that
        cannot take SIGTERM, as in uninterruptible I/O)."""
        self.marker.write_text("blocked")
        if self.block == "stuck":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            time.sleep(300)
        with self.fifo.open("rb") as fh:
            fh.read()

    @hookimpl
    def benchmark_datasets(self) -> list:
        """The blocking world."""
        from benchmark.data.synthetic import build_synthetic
        from benchmark.specs import DatasetSpec

        def build(root, split, options):  # noqa: ANN001, ANN202
            bundle = build_synthetic(root, split, options)
            side = bundle.train if self.view == "train" else bundle.test
            read = side.load_ground

            def load_ground(i: int):  # noqa: ANN202
                self.reads += 1
                if self.reads > self.after:
                    self.wait()
                return read(i)

            if self.view:
                side.load_ground = load_ground
            return bundle

        return [DatasetSpec("blocking-world", ("test",), "test", build, needs_root=False)]

    @hookimpl
    def benchmark_losses(self) -> list:
        """The blocking loss."""
        from benchmark.specs import LossSpec

        def loss(outputs, batch):  # noqa: ANN001, ANN202
            self.wait()

        return [LossSpec("blocking-loss", lambda: loss)]


def blocked_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: Blocking, args: list[str], sends: int
) -> tuple[int, str]:
    """Fork a child running ARGS with PLUGIN; once it blocks, send SIGTERM SENDS times (half
    a second apart); its exit status and stderr. It must exit, not hang."""
    reg = build_registry(extra=[("blocking", plugin)])
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    err = tmp_path / "stderr"
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            fd = os.open(err, os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(fd, 2)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            os.environ.pop(faults.VARIABLE, None)
            code = main(args)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while not plugin.marker.exists():
        assert time.monotonic() < deadline, "the child never reached the blocking read"
        assert os.waitpid(pid, os.WNOHANG)[0] == 0, err.read_text()
        time.sleep(0.05)
    time.sleep(0.2)  # into the blocking call
    for i in range(sends):
        if i:
            time.sleep(0.5)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the blocked child did not stop on SIGTERM")
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(done[1]), err.read_text()


def blocking_args(results: Path, *extra: str) -> list[str]:
    """The tiny run on the blocking world."""
    args = run_args(results, "--dataset", "blocking-world", "--regime", "quick", *extra)
    return args


def test_sigterm_stops_a_run_blocked_reading_test_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = Blocking(tmp_path, view="test")
    code, err = blocked_child(
        tmp_path, monkeypatch, plugin, blocking_args(tmp_path / "r", "--epochs", "0"), 1
    )
    assert code == 143 and "Traceback" not in err, err
    stopped = result_of(tmp_path / "r")
    assert stopped.status == "interrupted" and "during evaluation" in stopped.error


def test_sigterm_stops_a_run_blocked_waiting_for_training_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocked at the first batch of epoch 2: after WAIT_S the wait is cut short and the
    record names epoch 1's checkpoint."""
    monkeypatch.setattr(interrupt, "WAIT_S", 0.5)
    plugin = Blocking(tmp_path, view="train", after=LIMIT)  # epoch 1 reads LIMIT panoramas
    code, err = blocked_child(tmp_path, monkeypatch, plugin, blocking_args(tmp_path / "r"), 1)
    assert code == 143 and "Traceback" not in err, err
    stopped = result_of(tmp_path / "r")
    assert stopped.status == "interrupted" and "after waiting" in stopped.error
    assert "epoch-00001" in stopped.error and "--resume" in stopped.error


def test_a_second_sigterm_stops_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocked inside a training step (not a wait for data): the first signal waits for the
    step, the second stops at once and writes nothing."""
    plugin = Blocking(tmp_path)
    args = blocking_args(tmp_path / "r", "--set", "loss=blocking-loss")
    code, err = blocked_child(tmp_path, monkeypatch, plugin, args, 2)
    assert code == 143 and "Stopped at once by a second SIGTERM" in err, err
    assert "Traceback" not in err and not list((tmp_path / "r").glob("*.json"))


def test_sigterm_ends_a_process_whose_main_thread_cannot_take_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in uninterruptible I/O (a hung network filesystem), simulated by a main thread
    that blocks SIGTERM: the watchdog sees the signal pending and ends the process."""
    monkeypatch.setattr(interrupt, "STUCK_S", 1.0)
    plugin = Blocking(tmp_path, view="test", block="stuck")
    args = blocking_args(tmp_path / "r", "--epochs", "0")
    code, err = blocked_child(tmp_path, monkeypatch, plugin, args, 1)
    assert code == 143 and "has not been able to take the signal" in err, err
