"""The example plugin's own tests: the harness's conformance check, sizes, and metadata."""

from __future__ import annotations

from importlib import metadata

import torch
from cvgl_example_gem import SPEC, GeMNet, GeMOptions

from benchmark.api import check_method


def test_method_conforms_to_the_plugin_contract() -> None:
    result = check_method("example-gem")  # builds, trains, evaluates, reloads and profiles
    assert result.plugin_package.package == "cvgl-example-gem"
    assert result.model_options["dim"] == SPEC.variants["tiny"]["dim"]


def test_descriptors_are_unit_length_and_sized_by_options() -> None:
    opts = GeMOptions(**SPEC.variants["tiny"], ground_size=(32, 128), aerial_size=(32, 128))
    model = GeMNet(opts).eval()
    out = model(torch.rand(2, 3, 32, 128), torch.rand(2, 3, 32, 128))
    assert out["ground"].shape == out["aerial"].shape == (2, 64)
    assert torch.allclose(out["ground"].norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.descriptor_dim == 64 and model.preprocess.polar


def test_paper_configuration_size_counted_on_meta_device() -> None:
    with torch.device("meta"):
        model = GeMNet(GeMOptions())
    # per branch: convs 3*64*9 + 64*128*9 + 128*256*9 + 256*512*9, BN 2*(64+128+256+512),
    # GeM exponent 1, linear 512*512 + 512
    per_branch = 1_550_016 + 1_920 + 1 + 262_656
    assert sum(p.numel() for p in model.parameters()) == 2 * per_branch


def test_entry_points_name_the_package_and_its_method() -> None:
    plugin = metadata.entry_points(group="cvgl_benchmark", name="example_gem")
    methods = metadata.entry_points(group="cvgl_benchmark.methods", name="example-gem")
    assert [ep.value for ep in plugin] == [ep.value for ep in methods] == ["cvgl_example_gem"]
