"""Plugin loading: built-ins through entry points, built-in names never replaced, unknown
names get suggestions, the allow-list works."""

import types

import pytest

from benchmark.errors import BenchmarkError
from benchmark.hookspecs import hookimpl
from benchmark.losses import SoftMarginTriplet
from benchmark.registry import Plugin, PluginInfo, Registry, build_registry
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
    assert reg.info("models", "safa").package == "cvgl-benchmark"
    assert reg.provenance("safa").package == "cvgl-benchmark"


def test_unknown_name_suggests_close_matches() -> None:
    reg = build_registry()
    with pytest.raises(BenchmarkError, match=r"Unknown method 'safaa'.*Did you mean 'safa'"):
        reg.model("safaa")
    with pytest.raises(BenchmarkError, match="Available: .*synthetic"):
        reg.dataset("cvusaa-x")


def test_a_builtin_name_stays_the_builtin_and_the_clash_is_reported(
    capsys: pytest.CaptureFixture,
) -> None:
    reg = build_registry(extra=[("third-party", loss_plugin("soft-margin-triplet"))])
    assert reg.loss("soft-margin-triplet").build is SoftMarginTriplet
    assert reg.info("losses", "soft-margin-triplet").package == "cvgl-benchmark"
    assert (
        "Package <local> - (entry point third-party) also provides the loss "
        "'soft-margin-triplet', which is built into package cvgl-benchmark"
        in capsys.readouterr().err
    )
    assert "safa" in reg.models  # the other plugins still work


def test_two_other_packages_with_one_name_make_it_unusable() -> None:
    reg = build_registry(extra=[("a", loss_plugin("twin")), ("b", loss_plugin("twin"))])
    with pytest.raises(BenchmarkError, match=r"The loss name 'twin' is provided by .*a\).*b\)"):
        reg.loss("twin")
    assert "twin" not in reg.losses


def test_allow_list_restricts_loaded_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVGL_BENCHMARK_PLUGINS", "core")
    reg = build_registry()
    assert "safa" not in reg.models
    assert "synthetic" in reg.datasets


def test_a_builtin_that_fails_to_load_is_still_not_replaced() -> None:
    def fail() -> object:
        raise ImportError("no module named timm")

    other = types.SimpleNamespace(benchmark_losses=lambda: [LossSpec("twin", SoftMarginTriplet)])
    builtin = Plugin(PluginInfo("core", "cvgl-benchmark", "9"), fail, {"losses": {"twin"}})
    third = Plugin(PluginInfo("other", "other-package", "1"), lambda: other, {"losses": {"twin"}})
    with pytest.raises(BenchmarkError) as err:
        Registry([third, builtin]).loss("twin")
    assert str(err.value) == (
        "The loss 'twin' cannot be used: Package cvgl-benchmark 9 (entry point core) failed to "
        "import (ImportError: no module named timm)."
    )
