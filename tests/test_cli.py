"""The command line's surface: help that states every default, per-command flags, --debug in
either place, what `show` tells of variants, and the one-line summary of a run."""

from __future__ import annotations

import argparse

import pytest

from benchmark.cli import TRAINING_FLAGS, main, parser
from benchmark.results import RunResult
from benchmark.runner import summary_line
from benchmark.specs import MetricDisplay


def _commands(ap: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict:
    """Every (sub)command's parser by its words, e.g. ('config', 'show')."""
    found = {path: ap}
    for action in ap._subparsers._group_actions if ap._subparsers else []:
        for name, sub in action.choices.items():
            found.update(_commands(sub, (*path, name)))
    return found


def test_every_flag_of_every_command_states_its_default() -> None:
    for words, command in _commands(parser()).items():
        text = " ".join(command.format_help().split())  # one line: help wraps anywhere
        for action in command._actions:
            if not action.option_strings or action.required or action.dest in ("help", "version"):
                continue
            help_text = " ".join(command._get_formatter()._expand_help(action).split())
            assert "default" in help_text, (words, action.option_strings)
            assert help_text in text
        assert "default: None" not in text, words


def test_eval_lists_only_the_flags_it_uses() -> None:
    flags = {o for a in _commands(parser())[("eval",)]._actions for o in a.option_strings}
    assert not flags & set(TRAINING_FLAGS)
    assert {"--weights", "--descriptors", "--protocol", "--limit", "--format"} <= flags
    run = {o for a in _commands(parser())[("run",)]._actions for o in a.option_strings}
    assert set(TRAINING_FLAGS) <= run


def test_eval_refuses_a_training_flag_by_name(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--plugins", "safa", "--weights", "w.safetensors", "--epochs", "3"])
    assert stop.value.code == 2
    assert "eval does not train, so it takes no training flags (--epochs)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_and_after_the_command(
    where: str, capsys: pytest.CaptureFixture
) -> None:
    args = ["run", "--plugins", "no-such-method"]
    argv = ["--debug", *args] if where == "before" else [*args, "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "error: Unknown method 'no-such-method'" in err
    assert main(args) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_show_lists_what_each_variant_changes(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "safa"]) == 0
    out = capsys.readouterr().out
    assert "  max-pool: channel_pool 'mean' -> 'max'" in out
    assert "  tiny: pretrained True -> False, backbone 'vgg16' -> 'tiny'" in out
    assert "  paper:" not in out  # the reference the others are compared with


def test_summary_line_shows_a_methods_own_metrics() -> None:
    result = RunResult(
        plugin="m", variant="tiny", regime="quick", dataset="synthetic", split="test", seed=0,
        status="ok", metrics={"R@1": 12.5, "R@5": 40.0, "yaw_err": 3.14159, "curve": [1, 2]},
        display=[
            MetricDisplay.percent("R@1"),
            MetricDisplay(key="yaw_err", label="yaw error °", digits=1),
            MetricDisplay(key="curve", column=False),
        ],
    )  # fmt: skip
    line = summary_line(result)
    assert line.startswith("   R@1 12.50 | R@5 40.00 | yaw error ° 3.1 |")
    assert "curve" not in line  # not a column on the leaderboard either
