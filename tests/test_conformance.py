"""The conformance check plugin authors run: every built-in method passes it, and it names
what a method that breaks the contract gets wrong."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from benchmark import registry as registry_module
from benchmark.api import ConformanceError, ModelOptions, check_method, hookimpl
from benchmark.baselines import RAW_PIXELS, RawPixels
from benchmark.registry import build_registry


@pytest.mark.parametrize(
    ("method", "dataset"),
    [
        ("raw-pixels", "synthetic"),
        ("safa", "synthetic"),
        ("cvm-net", "synthetic"),
        ("aenet", "synthetic"),
        ("l2ltr", "synthetic"),
        ("saig", "synthetic"),
        ("vigor", "synthetic-vigor"),  # semi-positives and offsets: its offset head is used
    ],
)
def test_builtin_method_conforms(method: str, dataset: str) -> None:
    result = check_method(method, dataset)
    assert result.status == "ok" and result.variant == "tiny" and result.regime == "quick"
    assert result.plugin_package.package == "cvgl-benchmark"
    if method != "raw-pixels":  # the only one without parameters
        assert result.training["epochs_completed"] == 1 and result.profile["params_m"] > 0
    if method == "vigor":
        assert result.metrics["offset_refined"] is True


class Unnormalised(RawPixels):
    """Raw pixels whose aerial descriptors are not unit vectors, with the ground input size
    read from the wrong option."""

    def __init__(self, opts: ModelOptions) -> None:
        super().__init__(opts)
        self.preprocess = dataclasses.replace(self.preprocess, polar=not opts.polar)

    def embed_aerial(self, x: torch.Tensor) -> torch.Tensor:
        """Twice the unit descriptor."""
        return 2 * super().embed_aerial(x)


def test_a_method_that_breaks_the_contract_is_told_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = dataclasses.replace(RAW_PIXELS, name="bad-pixels", build=Unnormalised)
    plugin = types.SimpleNamespace(benchmark_models=hookimpl(lambda: [spec]))
    reg = build_registry(extra=[("bad", plugin)])
    monkeypatch.setattr(registry_module, "registry", lambda: reg)
    with pytest.raises(ConformanceError) as err:
        check_method("bad-pixels")
    message = str(err.value)
    assert message.startswith("Method 'bad-pixels': model.preprocess (sizes")
    assert "differs from its options" in message
    assert "forward()['aerial'] is not L2-normalised" in message
    assert "embed_aerial" not in message  # forward() uses embed_aerial: they agree
    with pytest.raises(ConformanceError, match=r"Unknown method 'no-such'"):
        check_method("no-such")
