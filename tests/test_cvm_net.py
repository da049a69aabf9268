"""CVM-Net: full-size parameter count, frozen layers, shared FC, CVM-Net-II, quick config."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pydantic import ValidationError  # noqa: E402

from benchmark.config import model_options, resolve  # noqa: E402
from benchmark.layers import NetVLAD  # noqa: E402
from benchmark.losses import SoftMarginTriplet  # noqa: E402
from benchmark.specs import IMAGENET_MEAN  # noqa: E402
from benchmark.weights import checkpoint_follows  # noqa: E402
from plugins.cvm_net import SPEC, CVMNet, CVMNetOptions  # noqa: E402

TINY = {**SPEC.variants["tiny"], "ground_size": (32, 128), "aerial_size": (64, 64)}


def count(module: nn.Module) -> int:
    """Parameters of MODULE, shared ones once."""
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def full_cvm_net_i() -> CVMNet:
    """CVM-Net-I at the paper's configuration, built once on the meta device (the ImageNet
    weights are not read: a checkpoint is said to follow)."""
    with torch.device("meta"), checkpoint_follows():
        return CVMNet(CVMNetOptions())


def test_cvm_net_i_full_size_matches_computed_count(full_cvm_net_i: CVMNet) -> None:
    model = full_cvm_net_i
    assert count(model) == 2 * 14_714_688 + 2 * 65_600 + 32_768 * 4_096 + 4_096
    assert abs(count(model) / 1e6 - 163.8) < 0.05
    assert model.descriptor_dim == 4096
    fc = model.shared
    assert isinstance(fc, nn.Linear) and (fc.in_features, fc.out_features) == (32_768, 4_096)
    branches = model.branches()
    assert branches["ground"][1] is branches["aerial"][1] is model.shared
    assert isinstance(model.ground[1], NetVLAD) and model.ground[1] is not model.aerial[1]
    pre = model.preprocess
    assert (pre.ground_size, pre.aerial_size, pre.polar) == ((224, 1232), (512, 512), False)
    assert (pre.bgr, pre.mean) == (False, IMAGENET_MEAN)  # timm's torchvision VGG16


def test_conv1_to_3_frozen_and_dropout_on_conv4_5(full_cvm_net_i: CVMNet) -> None:
    trunk = full_cvm_net_i.ground[0]
    convs = [m for m in trunk if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert [c.weight.requires_grad for c in convs] == [False] * 7 + [True] * 6
    drops = [m for m in trunk if isinstance(m, nn.Dropout)]
    assert len(drops) == 6 and all(d.p == 0.2 for d in drops)


def test_nothing_is_frozen_when_training_from_scratch() -> None:
    with torch.device("meta"):
        model = CVMNet(CVMNetOptions(pretrained=False))
    assert all(p.requires_grad for p in model.parameters())
    assert model.initialisation == "from scratch"


def test_paper_sizes_are_the_official_code_and_128x512_a_variant() -> None:
    opts = CVMNetOptions()
    assert (opts.ground_size, opts.aerial_size, opts.polar) == ((224, 1232), (512, 512), False)
    assert opts.pretrained is True and opts.frozen_stages == 3
    shared = CVMNetOptions(**SPEC.variants["128x512"])
    assert (shared.ground_size, shared.aerial_size) == ((128, 512), (256, 256))


@pytest.mark.parametrize("version", ["I", "II"])
def test_tiny_model_trains_both_versions(version: str) -> None:
    torch.manual_seed(0)
    model = CVMNet(CVMNetOptions(**TINY, version=version))
    out = model(torch.randn(4, 3, 32, 128), torch.randn(4, 3, 64, 64))
    assert out["ground"].shape == out["aerial"].shape == (4, 512) == (4, model.descriptor_dim)
    torch.testing.assert_close(out["aerial"].norm(dim=1), torch.ones(4))
    SoftMarginTriplet()(out, {}).backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    vlads = [m for m in model.modules() if isinstance(m, NetVLAD)]
    assert len(vlads) == (2 if version == "I" else 1)  # II shares one NetVLAD


def test_cvm_net_ii_shares_transformation_and_netvlad() -> None:
    with torch.device("meta"), checkpoint_follows():
        model = CVMNet(CVMNetOptions(**SPEC.variants["cvm-net-ii"]))
    shared = model.shared
    assert isinstance(shared[-1], nn.Linear) and shared[-1].bias is None
    assert (shared[-1].in_features, shared[-1].out_features) == (32_768, 4_096)
    assert model.branches()["ground"][1] is model.branches()["aerial"][1]
    own = [m for m in model.ground if isinstance(m, nn.Conv2d)][-1]
    assert own.kernel_size == (1, 1) and own.out_channels == 512


def test_tiny_backbone_refuses_pretrained_weights() -> None:
    with pytest.raises(ValidationError, match="no pretrained weights"):
        CVMNetOptions(**{**TINY, "pretrained": True})


def test_quick_protocol_config_builds() -> None:
    run = resolve(SPEC, {}, quick=True)
    opts = model_options(SPEC, run)
    assert run.variant == "tiny" and run.loss == "soft-margin-triplet"
    assert (opts.ground_size, opts.aerial_size, opts.polar) == ((32, 128), (64, 64), False)
    assert opts.frozen_stages == 0
    model = CVMNet(opts)
    assert all(p.requires_grad for p in model.parameters())
