"""Each recipe's training protocol as its official code runs it: precision, gradient
clipping, model selection, augmentation and dataset-specific settings; and the precision a
run applies is the one it records."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmark.cli import _user_layers, parser
from benchmark.config import RunConfig, resolve
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.runner import run_job
from benchmark.training.step import Precision, precision_policy


@pytest.fixture(scope="module")
def reg():
    return build_registry()


# From the official code: L2LTR and SAIG keep the best test R@1 (which the harness replaces
# by validation); SAFA and CVM-Net save every epoch and log its test accuracy; VIGOR trains a
# fixed schedule; AENet publishes no code. Only L2LTR clips (max_grad_norm 1.0); SAIG's ASAM
# script (train_sam.py) neither clips nor autocasts.
OFFICIAL = {
    "safa": ("best", None, []),
    "cvm-net": ("best", None, ["aerial-crop-rotate"]),
    "l2ltr": ("best", 1.0, []),
    "saig": ("best", None, ["circular-shift"]),
    "aenet": ("last", None, []),
    "vigor": ("last", None, []),
}


@pytest.mark.parametrize("plugin", sorted(OFFICIAL))
def test_paper_recipes_follow_the_official_training_code(reg, plugin: str) -> None:
    run = resolve(reg.model(plugin), {}, quick=False)
    selection, clip, augment = OFFICIAL[plugin]
    assert (run.selection, run.grad_clip, run.augment) == (selection, clip, augment)
    assert run.precision == "fp32"  # every paper trained in fp32 (AMP was opt-in at most)
    assert run.val_fraction == (0.05 if selection == "best" else 0.0)


def test_dataset_specific_recipe_settings(reg) -> None:
    safa, saig = reg.model("safa"), reg.model("saig")
    on_cvact = resolve(safa, {"dataset": "cvact"}, quick=False)
    assert on_cvact.loss_options == {"min_negative_distance_m": 25.0}
    assert resolve(safa, {"dataset": "cvusa"}, quick=False).loss_options == {}
    assert resolve(saig, {"dataset": "cvact"}, quick=False).augment == []  # aug=False there


def test_fp16_is_refused_with_asam_before_any_work(reg) -> None:
    with pytest.raises(BenchmarkError, match="precision=fp16 needs loss scaling.*bf16"):
        resolve(reg.model("saig"), {"precision": "fp16"}, quick=False)
    assert resolve(reg.model("saig"), {"precision": "bf16"}, quick=False).sam_rho == 2.0


def test_best_selection_needs_a_validation_split(reg) -> None:
    with pytest.raises(BenchmarkError, match="selection=best picks the epoch on a validation"):
        resolve(reg.model("l2ltr"), {"val_fraction": 0}, quick=False)


def test_fp16_needs_cuda() -> None:
    cfg = RunConfig(plugin="safa", precision="fp16")
    with pytest.raises(BenchmarkError, match="fp16.*CUDA.*bf16"):
        precision_policy(cfg, torch.device("cpu"))


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_policy_sets_the_arithmetic(name: str, dtype: torch.dtype) -> None:
    policy = Precision(name, torch.device("cpu"))
    with policy.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    assert not policy.scaler().is_enabled()  # loss scaling is for fp16 only


def test_amp_flag_asks_for_fp16() -> None:
    def flags(*argv: str) -> dict[str, Any]:
        layers = _user_layers(parser().parse_args(["run", "--plugins", "saig", *argv]))
        return {k: v for layer in layers for k, v in layer.values.items()}

    assert flags("--amp")["precision"] == "fp16"
    assert "precision" not in flags()


def test_a_bf16_run_records_the_precision_it_applied(reg, tiny_run: dict[str, Any]) -> None:
    cfg = resolve(reg.model("safa"), {**tiny_run, "epochs": 1, "precision": "bf16"}, quick=True)
    result = run_job(reg, cfg)
    assert result.status == "ok", result.error
    assert result.training["precision"] == "bf16"


def test_a_run_records_the_augmentation_it_applied(reg, tiny_run: dict[str, Any]) -> None:
    """The quick SAFA is polar, so SAIG's joint shift applies; CVM-Net's tile rotation does
    not, and the result says why."""
    user = {**tiny_run, "epochs": 1, "augment": ["circular-shift", "aerial-crop-rotate"]}
    shifted = run_job(reg, resolve(reg.model("safa"), user, quick=True))
    plain = run_job(reg, resolve(reg.model("safa"), {**tiny_run, "epochs": 1}, quick=True))
    assert shifted.status == plain.status == "ok"
    applied = shifted.training["augmentation"]
    assert applied["applied"] == ["circular-shift"]
    assert "polar" in applied["skipped"]["aerial-crop-rotate"]
    assert plain.training["augmentation"] == {"applied": [], "skipped": {}}
    assert shifted.training["history"][0]["loss"] != plain.training["history"][0]["loss"]
    assert shifted.run_id != plain.run_id  # a different method: its own result file
