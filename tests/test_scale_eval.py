"""Per-query ranks and descriptors saved beside the result; re-evaluation without the model."""

from pathlib import Path
from typing import Any

import pytest

from benchmark.cli import _user_layers, parser
from benchmark.config import merge, resolve
from benchmark.metrics import Evaluation, recall_metrics
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.retrieval import load_retrieval
from benchmark.runner import run_job


def _job(user: dict[str, Any], descriptors: Path | None = None) -> RunResult:
    reg = build_registry()
    return run_job(reg, resolve(reg.model("safa"), user, quick=True), descriptors=descriptors)


def test_saved_descriptors_rescore_to_the_same_metrics(tiny_run: dict[str, Any]) -> None:
    user = {**tiny_run, "epochs": 0, "save_descriptors": True, "eval_memory_mb": 1}
    first = _job(user)
    assert first.status == "ok", first.error
    out = Path(tiny_run["results_dir"])
    assert set(first.files) == {"retrieval", "descriptors"}
    found, positives = load_retrieval(out / first.files["retrieval"])
    assert found.topk.shape == (first.metrics["queries"], 10)

    class Split:
        num_aerial = first.metrics["references"]

    recomputed = recall_metrics(Evaluation(found.ranks, found.topk, found.topk_scores, Split()))
    assert {k: recomputed[k] for k in ("R@1", "R@5", "R@1%")} == {
        k: first.metrics[k] for k in ("R@1", "R@5", "R@1%")
    }
    saved = out / first.files["descriptors"]
    again = _job({**user, "save_descriptors": False}, descriptors=saved)
    assert again.status == "ok", again.error
    assert again.metrics == first.metrics
    assert again.profile == {} and again.training["descriptors_from"] == str(saved)
    assert again.preprocessing == first.preprocessing


def test_descriptors_of_another_protocol_are_refused(tiny_run: dict[str, Any]) -> None:
    first = _job({**tiny_run, "epochs": 0, "save_descriptors": True})
    saved = Path(tiny_run["results_dir"]) / first.files["descriptors"]
    other = _job({**tiny_run, "epochs": 0, "protocol": "fov=90"}, descriptors=saved)
    assert other.status == "failed"
    assert "protocol='aligned'" in other.error and "protocol='fov=90'" in other.error


def test_protocol_is_recorded_and_names_its_own_result_file(tiny_run: dict[str, Any]) -> None:
    result = _job({**tiny_run, "epochs": 0, "protocol": "unknown-orientation"})
    assert result.status == "ok", result.error
    assert result.protocol == "unknown-orientation"
    assert result.preprocessing["protocol"]["name"] == "unknown-orientation"
    assert result.filename() == f"{result.stem()}.json"
    assert result.stem().endswith(f"-seed0-unknown-orientation-{result.run_id}")


def test_cli_flags_reach_the_run_config() -> None:
    args = parser().parse_args(
        [
            "eval",
            "--plugins",
            "safa",
            "--descriptors",
            "d.safetensors",
            "--eval-memory",
            "64",
            "--protocol",
            "fov=70",
        ]
    )
    assert args.descriptors == Path("d.safetensors") and args.weights is None
    user: dict[str, Any] = {}
    for layer in _user_layers(args):
        user = merge(user, layer.values)
    assert (user["eval_memory_mb"], user["protocol"]) == (64, "fov=70")
    with pytest.raises(SystemExit):
        parser().parse_args(["eval", "--plugins", "safa", "--weights", "w", "--descriptors", "d"])
