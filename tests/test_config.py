"""Config merging and validation: one clear line naming the field and what is allowed; each
field's role declared once and everything derived from it; regimes are data files."""

import json
from pathlib import Path

import pytest
from torch import nn

from benchmark import regimes
from benchmark.cli import main
from benchmark.config import (
    ROLES,
    Layer,
    RunConfig,
    load_config_file,
    model_options,
    parse_sets,
    resolve,
    resolve_layers,
)
from benchmark.errors import BenchmarkError
from benchmark.registry import build_registry
from benchmark.settings import RECIPE_FIELDS, Recipe, roles_of
from benchmark.training.optim import build_optimizer


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


def test_every_value_names_its_source(safa, tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("epochs: 3\nlr: 0.1\nmodel:\n  heads: 4\n")
    layers = [
        Layer("file", f"file {file}", load_config_file(file)),
        Layer("flag", "flag", {"epochs": 5}),
        Layer("set", "--set", parse_sets(["lr=0.2", "dataset_options.n_train=10"])),
    ]
    resolved = resolve_layers(safa, layers, "quick")
    source = {key: src for key, _, src, _ in resolved.rows()}
    value = {key: val for key, val, _, _ in resolved.rows()}
    assert (value["epochs"], source["epochs"]) == (5, "flag")  # flag over file
    assert (value["lr"], source["lr"]) == (0.2, "--set")  # --set over file
    assert (value["model.heads"], source["model.heads"]) == (4, f"file {file}")
    assert source["dataset_options.n_train"] == "--set"
    assert source["optimizer"] == "regime quick"  # the regime over safa's recipe (adam)
    assert source["variant"] == "regime quick" and source["model.backbone"] == "variant tiny"
    assert source["model.ground_size"] == "safa quick settings"
    assert source["grad_clip"] == "default" and source["plugin"] == "--plugins"
    assert set(ROLES) <= {key.split(".")[0] for key in source}  # every field is shown
    assert resolve_layers(safa, [], "paper").rows()[0][2] == "--plugins"
    paper = {k: s for k, _, s, _ in resolve_layers(safa, [], "paper").rows()}
    assert paper["optimizer"] == "safa recipe" and paper["weight_decay"] == "default"


def test_every_field_has_one_role_and_the_recipe_is_declared_once() -> None:
    assert set(ROLES.values()) <= {
        "identity",
        "data",
        "method",
        "recipe",
        "randomness",
        "evaluation",
        "infrastructure",
    }
    assert {k for k, r in ROLES.items() if r == "recipe"} == set(RECIPE_FIELDS)
    assert {k for k, r in ROLES.items() if r == "identity"} == {"plugin", "variant", "regime"}
    for name in RECIPE_FIELDS:  # one declaration: the same default and bounds
        assert RunConfig.model_fields[name] is Recipe.model_fields[name] or (
            repr(RunConfig.model_fields[name]) == repr(Recipe.model_fields[name])
        )
    with pytest.raises(BenchmarkError, match="lr: Input should be greater than 0"):
        resolve(build_registry().model("safa"), {"lr": 0})
    with pytest.raises(Exception, match="greater than 0"):
        Recipe(lr=0)  # a plugin's recipe has the bounds of the run config

    class NoRole(Recipe):
        extra_field: int = 0

    with pytest.raises(TypeError, match="NoRole.extra_field declares no role"):
        roles_of(NoRole)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lr=-1"], r"lr: Input should be greater than 0 \(got -1, from caller\)"),
        (["batch_size=1"], r"batch_size: Input should be greater than or equal to 2"),
        (["optimizer=adagrad"], r"optimizer: Input should be 'adam', 'adamw' or 'sgd'"),
        (["epochs=many"], r"epochs: Input should be a valid integer"),
        (["lerning_rate=1"], r"Unknown setting 'lerning_rate'"),
        (["btch_size=4"], r"Did you mean 'batch_size'"),
        (
            ["model.chanel_pool=max"],
            r"Unknown setting 'model.chanel_pool'.*Did you mean 'channel_pool'",
        ),
        (["model.channel_pool=median"], r"model.channel_pool: Input should be 'max' or 'mean'"),
        (["variant=huge"], r"Unknown variant 'huge' of 'safa'. Available variants: .*tiny"),
        (["device=tpu"], r"device: String should match pattern"),
        (["seed=4294967296"], r"seed: Input should be less than 4294967296"),
        (["protocol_seed=4294967296"], r"protocol_seed: Input should be less than 4294967296"),
    ],
)
def test_invalid_values_name_the_field(safa, sets: list[str], message: str) -> None:
    with pytest.raises(BenchmarkError, match=message):
        resolve(safa, parse_sets(sets), quick=False)


@pytest.mark.parametrize("key", ["plugin", "regime", "variant"])
@pytest.mark.parametrize("kind", ["set", "file"])
def test_identity_is_not_set_by_set_or_a_file(safa, key: str, kind: str) -> None:
    layer = Layer(kind, "--set" if kind == "set" else "file x.yaml", {key: "cvm_net"})
    with pytest.raises(BenchmarkError, match=f"'{key}' is part of a run's identity"):
        resolve_layers(safa, [layer], "paper")


def test_set_plugin_on_the_command_line_is_refused(capsys) -> None:
    assert main(["run", "--plugins", "safa", "--set", "plugin=cvm_net", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "chosen with --plugins" in err and "Traceback" not in err
    assert main(["run", "--plugins", "safa", "--variant", "tiny", "--dry-run"]) == 0
    assert '"tiny"' in capsys.readouterr().out  # --variant is the flag that chooses it


def test_set_requires_key_value() -> None:
    with pytest.raises(BenchmarkError, match="--set expects KEY=VALUE"):
        parse_sets(["lr"])


@pytest.mark.parametrize(
    "items",
    [["a=1", "a.b=2"], ["a.b=2", "a=1"], ["model.x.y=1", "model.x=3"], ["model..x=1"], [".a=1"]],
)
def test_conflicting_or_malformed_set_keys_are_one_clear_error(items: list[str]) -> None:
    with pytest.raises(BenchmarkError, match="--set"):
        parse_sets(items)


def test_set_groups_merge() -> None:
    assert parse_sets(["m.a=1", "m.b=2", 'm={"c": 3}']) == {"m": {"a": 1, "b": 2, "c": 3}}


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


def alias_bomb(levels: int) -> str:
    """A 'billion laughs' file: each level repeats the previous one nine times."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bomb.yaml", alias_bomb(12), "expands to more than"),  # 9^11 values if expanded
        ("loop.yaml", "a: &a [*a]\n", "expands to more than"),
        ("deep.yaml", "[" * 100_000 + "]" * 100_000, "nested too deeply|not valid YAML"),
        ("huge.yaml", "x: " + "y" * (2 << 20) + "\n", "larger than"),
        ("binary.yaml", None, "could not be read|not valid YAML"),
    ],
)
def test_hostile_config_files_are_refused_quickly(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b"\xff\xfe\x00bad")
    else:
        path.write_text(text)
    with pytest.raises(BenchmarkError, match=message):
        load_config_file(path)


def test_small_aliases_are_still_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(alias_bomb(3))  # 9 x 9 values: a file may reuse a block
    assert len(load_config_file(path)["a2"]) == 9


def test_switching_loss_drops_the_recipe_loss_options() -> None:
    vigor = build_registry().model("vigor")
    assert resolve(vigor, {}, quick=False).loss_options  # the hybrid's stage lengths
    switched = resolve(vigor, {"loss": "soft-margin-triplet"}, quick=False)
    assert switched.loss_options == {}
    kept = resolve(
        vigor, {"loss": "soft-margin-triplet", "loss_options": {"alpha": 5}}, quick=False
    )
    assert kept.loss_options == {"alpha": 5}
    rows = resolve_layers(vigor, [Layer("set", "--set", {"loss": "infonce"})], "quick").rows()
    assert ("loss_options", {}, "default (--set changed the loss)", "recipe") in rows


def test_l2ltr_recipe_sets_adamw_eps_and_the_quick_regime_resets_it() -> None:
    spec = build_registry().model("l2ltr")
    paper, quick = resolve(spec, {}, quick=False), resolve(spec, {}, quick=True)
    assert (paper.optimizer, paper.adam_eps, quick.adam_eps) == ("adamw", 1e-6, 1e-8)
    opt = build_optimizer(paper, nn.Linear(2, 2))
    assert opt.param_groups[0]["eps"] == 1e-6


def test_regimes_are_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, safa) -> None:
    quick = regimes.get("quick")
    assert quick.settings["lr"] == 1e-3  # the method's own quick settings go over it:
    assert resolve(safa, {}, quick=True).lr == safa.quick["lr"] == 3e-3  # its tuned lr
    assert regimes.auto("synthetic", accelerator=False) == "quick"
    assert regimes.auto("synthetic", accelerator=True) == "paper"
    assert regimes.auto("cvusa", accelerator=False) == "paper"
    with pytest.raises(BenchmarkError, match="Unknown regime 'smok'"):
        regimes.get("smok")
    for path in regimes.FOLDER.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "smoke.yaml").write_text(
        "description: two epochs of the tiny variant\nsettings: {variant: tiny, epochs: 2}\n"
    )
    monkeypatch.setattr(regimes, "FOLDER", tmp_path)
    regimes.available.cache_clear()
    try:
        run = resolve(safa, {}, regime="smoke")
        assert (run.regime, run.variant, run.epochs, run.lr) == ("smoke", "tiny", 2, 1e-5)
        (tmp_path / "bad.yaml").write_text("description: x\nsettings: {results_dir: /tmp}\n")
        regimes.available.cache_clear()
        with pytest.raises(BenchmarkError, match="sets results_dir; a regime sets only"):
            regimes.available()
    finally:
        regimes.available.cache_clear()


def test_config_show_prints_sources_identity_and_files(tmp_path: Path, capsys) -> None:
    file = tmp_path / "run.toml"
    file.write_text("lr = 0.01\n")
    args = ["config", "show", "--plugins", "safa", "--config", str(file), "--epochs", "3"]
    args += ["--set", "model.heads=4", "--limit", "8", "--results-dir", str(tmp_path)]
    assert main([*args, "--format", "json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    rows = {r["setting"]: (r["value"], r["source"], r["role"]) for r in shown["settings"]}
    assert rows["lr"] == (0.01, f"file {file}", "recipe")
    assert rows["epochs"] == (3, "flag", "recipe")
    assert rows["model.heads"] == (4, "--set", "method")
    assert rows["limit"] == (8, "flag", "data")
    assert rows["split"] == ("test", "synthetic default", "data")
    assert rows["device"][2] == "infrastructure"
    assert shown["identity"].startswith("synthetic-test__safa-tiny-quick-seed0-")
    assert shown["result"] == str(tmp_path / f"{shown['identity']}.json")
    assert shown["identity_settings"]["limit"] == 8
    assert main(args) == 0  # the table form
    table = capsys.readouterr().out
    assert shown["identity"] in table and "model.heads" in table and "--set" in table
    assert not list(tmp_path.glob("*.json"))  # nothing ran


def test_list_settings_take_comma_lists() -> None:
    spec = build_registry().model("safa")
    run = resolve(spec, parse_sets(["metrics=recall,hit-rate", "augment=circular-shift"]))
    assert run.metrics == ["recall", "hit-rate"] and run.augment == ["circular-shift"]
    assert resolve(spec, parse_sets(['metrics=["recall"]'])).metrics == ["recall"]  # JSON too
