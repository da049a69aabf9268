"""Plugin loading: duplicates fail loudly, unknown names get suggestions, allow-list works."""

import types

import pytest

from benchmark.errors import BenchmarkError
from benchmark.hookspecs import hookimpl
from benchmark.registry import build_registry
from benchmark.specs import LossSpec


def loss_plugin(name: str) -> types.SimpleNamespace:
    @hookimpl
    def benchmark_losses() -> list[LossSpec]:
        return [LossSpec(name, lambda: None)]

    return types.SimpleNamespace(benchmark_losses=benchmark_losses)


def test_builtin_and_paper_plugins_load_through_entry_points() -> None:
    reg = build_registry()
    assert "synthetic" in reg.datasets
    assert "safa" in reg.models
    assert "soft-margin-triplet" in reg.losses
    assert reg.origin[("models", "safa")].package == "cvgl-benchmark"


def test_unknown_name_suggests_close_matches() -> None:
    reg = build_registry()
    with pytest.raises(BenchmarkError, match=r"Unknown model 'safaa'.*Did you mean 'safa'"):
        reg.model("safaa")
    with pytest.raises(BenchmarkError, match="Available datasets: .*synthetic"):
        reg.dataset("cvusaa-x")


def test_duplicate_name_fails_loudly_naming_both_plugins(capsys: pytest.CaptureFixture) -> None:
    reg = build_registry(extra=[("third-party", loss_plugin("soft-margin-triplet"))])
    with pytest.raises(
        BenchmarkError, match=r"Duplicate loss name 'soft-margin-triplet'.*'core'.*'third-party'"
    ):
        reg.loss("soft-margin-triplet")
    assert "Duplicate loss name" in capsys.readouterr().err
    assert "safa" in reg.models  # the other plugins still work


def test_allow_list_restricts_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVGL_BENCHMARK_PLUGINS", "core")
    reg = build_registry()
    assert "safa" not in reg.models
    assert "synthetic" in reg.datasets
