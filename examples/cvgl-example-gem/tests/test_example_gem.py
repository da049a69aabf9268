"""The example plugin's own tests: contract, sizes, and registration through its entry point."""

from __future__ import annotations

from importlib import metadata

import torch
from cvgl_example_gem import SPEC, GeMNet, GeMOptions

from benchmark.config import resolve


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


def test_quick_regime_uses_the_tiny_variant_and_small_inputs() -> None:
    cfg = resolve(SPEC, {}, quick=True)
    assert cfg.variant == "tiny" and cfg.model["ground_size"] == (32, 128)


def test_entry_point_is_installed() -> None:
    eps = metadata.entry_points(group="cvgl_benchmark", name="example_gem")
    assert [ep.value for ep in eps] == ["cvgl_example_gem"]
