"""End to end: the CLI trains and evaluates a tiny SAFA; runs are deterministic and resumable."""

import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

from benchmark.config import resolve
from benchmark.hookspecs import hookimpl
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.runner import run_job
from tests.conftest import TINY_WORLD


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=300
    )


def test_list_json_names_every_kind() -> None:
    out = cli("list", "--format", "json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert set(listing) == {"methods", "datasets", "losses", "metrics"}
    assert "safa" in listing["methods"] and "synthetic" in listing["datasets"]
    assert "soft-margin-triplet" in listing["losses"] and "recall" in listing["metrics"]


def test_cli_run_writes_a_valid_result(tmp_path: Path) -> None:
    world = [f"dataset_options.{k}={json.dumps(v)}" for k, v in TINY_WORLD.items()]
    sets = [a for kv in world for a in ("--set", kv)]
    out = cli(
        "run",
        "--plugins",
        "safa",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        *sets,
    )
    assert out.returncode == 0, out.stderr
    assert "R@1" in out.stdout
    # one line per epoch on stdout; no progress-bar frames when stderr is not a terminal
    assert re.search(r"epoch 1/1  loss \d\.\d{4}  lr \S+  val R@1 \d+\.\d\d  \S+ s", out.stdout)
    assert "it/s" not in out.stderr and "\r" not in out.stderr
    (path,) = tmp_path.glob("*.json")
    result = RunResult.model_validate_json(path.read_text())
    assert (result.plugin, result.status, result.regime, result.variant) == (
        "safa",
        "ok",
        "quick",
        "tiny",
    )
    assert set(result.metrics) >= {"R@1", "R@5", "R@10", "R@1%", "R@1%_k"}
    assert result.metrics["references"] == TINY_WORLD["n_test"]
    assert result.env["torch"] and result.config["epochs"] == 1
    assert result.preprocessing["polar"] is True
    assert result.training["epochs_completed"] == 1


def test_unknown_plugin_is_one_clear_line() -> None:
    out = cli("run", "--plugins", "safaa", "--epochs", "0")
    assert out.returncode == 2
    assert "Did you mean 'safa'" in out.stderr and "Traceback" not in out.stderr


def _job(user: dict[str, Any], extra: list | None = None, resume: bool = False) -> RunResult:
    reg = build_registry(extra=extra)
    cfg = resolve(reg.model("safa"), user, quick=True)
    return run_job(reg, cfg, resume=resume)


def test_same_seed_same_metrics(tiny_run: dict[str, Any]) -> None:
    first = _job(tiny_run)
    second = _job(tiny_run)
    assert first.status == second.status == "ok"
    assert first.metrics == second.metrics
    assert first.training["history"] == second.training["history"]


class StopAfter:
    """An observer plugin that kills training after a given epoch (fault injection)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    @hookimpl
    def benchmark_on_epoch_end(self, method: str, epoch: int, logs: dict) -> None:
        if epoch == self.epoch:
            raise RuntimeError("injected interruption")


def test_resume_after_interruption_matches_uninterrupted(tiny_run: dict[str, Any]) -> None:
    user = {**tiny_run, "epochs": 3}
    straight = _job({**user, "results_dir": tiny_run["results_dir"] / "straight"})
    broken = _job(user, extra=[("fault", StopAfter(2))])
    assert broken.status == "failed" and "injected interruption" in broken.error
    resumed = _job(user, resume=True)
    assert resumed.status == "ok"
    assert resumed.training["resumed_from"] == 2
    assert resumed.metrics == straight.metrics
    assert resumed.training["history"] == straight.training["history"]


def test_failing_plugin_does_not_stop_the_others(tiny_run: dict[str, Any]) -> None:
    @hookimpl
    def benchmark_losses():
        from benchmark.specs import LossSpec

        def nan_loss(outputs, batch):
            return outputs["ground"].sum() * float("nan")

        return [LossSpec("nan-loss", lambda: nan_loss)]

    plugin = types.SimpleNamespace(benchmark_losses=benchmark_losses)
    bad = _job({**tiny_run, "loss": "nan-loss"}, extra=[("nan", plugin)])
    assert bad.status == "failed" and "The loss became nan" in bad.error
    good = _job(tiny_run)
    assert good.status == "ok"


def test_eval_with_missing_weights_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    out = cli(
        "eval",
        "--plugins",
        "safa",
        "--weights",
        str(tmp_path / "weights.safetensors"),
        "--results-dir",
        str(tmp_path),
    )
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # no record, no checkpoint, no lock


def test_model_without_parameters_skips_training(tiny_run: dict[str, Any]) -> None:
    reg = build_registry()
    cfg = resolve(reg.model("raw-pixels"), {**tiny_run, "epochs": 3}, quick=True)
    result = run_job(reg, cfg)
    assert result.status == "ok", result.error
    assert result.training["skipped"] == "the model has no trainable parameters"
    assert 0 <= result.metrics["R@1"] <= 100


def test_evaluating_a_checkpoint_reproduces_the_run_that_wrote_it(
    tiny_run: dict[str, Any],
) -> None:
    trained = _job(tiny_run)
    weights = Path(trained.training["selected_weights"])  # the epoch the metrics are of
    reg = build_registry()
    cfg = resolve(reg.model("safa"), {**tiny_run, "epochs": 0}, quick=True)
    again = run_job(reg, cfg, weights=weights)
    assert again.status == "ok", again.error
    assert again.training["weights"] == str(weights)
    for key in ("R@1", "R@5", "R@10", "R@1%"):
        assert again.metrics[key] == trained.metrics[key]


def test_changed_method_options_get_their_own_result_and_checkpoint(
    tiny_run: dict[str, Any],
) -> None:
    plain = _job({**tiny_run, "epochs": 1})
    ablation = {**tiny_run, "epochs": 1, "model": {**tiny_run["model"], "dropout": 0.0}}
    changed = _job(ablation)
    assert plain.run_id != changed.run_id and len(changed.run_id) == 8
    assert _job(ablation).run_id == changed.run_id  # stable, so --resume finds it
    assert plain.filename() != changed.filename()
    assert changed.filename().endswith(f"-seed0-{changed.run_id}.json")
    assert changed.identity["model"]["dropout"] == 0.0
    assert Path(plain.training["checkpoint"]).parent != Path(changed.training["checkpoint"]).parent
    other_loss = _job({**tiny_run, "epochs": 0, "loss": "infonce"})
    budget = _job({**tiny_run, "epochs": 0, "lr": 0.5})
    assert len({plain.run_id, changed.run_id, other_loss.run_id, budget.run_id}) == 4
