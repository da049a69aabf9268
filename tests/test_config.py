"""Config merging and validation: one clear line naming the field and what is allowed."""

from pathlib import Path

import pytest
from torch import nn

from benchmark.config import load_config_file, model_options, parse_sets, resolve
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.train import build_optimizer


@pytest.fixture(scope="module")
def safa():
    return build_registry().model("safa")


def test_precedence_recipe_then_regime_then_user(safa) -> None:
    paper = resolve(safa, {}, quick=False)
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.variant) == (
        "adam",
        1e-5,
        32,
        "paper",
    )
    quick = resolve(safa, {}, quick=True)
    assert (quick.regime, quick.variant, quick.optimizer) == ("quick", "tiny", "adamw")
    assert quick.model["ground_size"] == (32, 128)
    user = resolve(safa, parse_sets(["lr=3e-4", "model.channel_pool=mean"]), quick=True)
    assert user.lr == 3e-4
    opts = model_options(safa, user)
    assert opts.channel_pool == "mean" and opts.backbone == "tiny"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lr=-1"], r"lr: Input should be greater than 0 \(got -1\)"),
        (["batch_size=1"], r"batch_size: Input should be greater than or equal to 2"),
        (["optimizer=adagrad"], r"optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
        (["epochs=many"], r"epochs: Input should be a valid integer"),
        (["lerning_rate=1"], r"Unknown setting 'lerning_rate'"),
        (["btch_size=4"], r"Did you mean 'batch_size'"),
        (
            ["model.chanel_pool=max"],
            r"Unknown setting model.'chanel_pool'.*Did you mean 'channel_pool'",
        ),
        (["model.channel_pool=median"], r"model.channel_pool: Input should be 'max' or 'mean'"),
        (["variant=huge"], r"Unknown variant 'huge' of 'safa'. Available variants: .*tiny"),
        (["device=tpu"], r"device: String should match pattern"),
    ],
)
def test_invalid_values_name_the_field(safa, sets: list[str], message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        resolve(safa, parse_sets(sets), quick=False)


def test_set_requires_key_value() -> None:
    with pytest.raises(BenchmarkError, match="--set expects KEY=VALUE"):
        parse_sets(["lr"])


def test_yaml_and_toml_files(tmp_path: Path) -> None:
    good = tmp_path / "run.yaml"
    good.write_text("epochs: 3\nmodel:\n  heads: 4\n")
    assert load_config_file(good) == {"epochs": 3, "model": {"heads": 4}}
    toml = tmp_path / "run.toml"
    toml.write_text("epochs = 3\n[model]\nheads = 4\n")
    assert load_config_file(toml) == {"epochs": 3, "model": {"heads": 4}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nmodel: [unclosed\n")
    with pytest.raises(BenchmarkError, match="not valid YAML at line"):
        load_config_file(bad)


def test_switching_loss_drops_the_recipe_loss_options() -> None:
    vigor = build_registry().model("vigor")
    assert resolve(vigor, {}, quick=False).loss_options  # the hybrid's stage lengths
    switched = resolve(vigor, {"loss": "soft-margin-triplet"}, quick=False)
    assert switched.loss_options == {}
    kept = resolve(
        vigor, {"loss": "soft-margin-triplet", "loss_options": {"alpha": 5}}, quick=False
    )
    assert kept.loss_options == {"alpha": 5}


def test_l2ltr_recipe_sets_adamw_eps_and_the_quick_regime_resets_it() -> None:
    spec = build_registry().model("l2ltr")
    paper, quick = resolve(spec, {}, quick=False), resolve(spec, {}, quick=True)
    assert (paper.optimizer, paper.adam_eps, quick.adam_eps) == ("adamw", 1e-6, 1e-8)
    opt = build_optimizer(paper, nn.Linear(2, 2))
    assert opt.param_groups[0]["eps"] == 1e-6
