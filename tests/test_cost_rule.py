"""One rule decides which measured cost is compared with a paper's figures, and `profile`
and the leaderboard both follow it: the variant the card names for its figures, with no
model option changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmark.leaderboard import render
from benchmark.profiling.reporting import render_profile_table
from benchmark.results import CardSnapshot
from plugins.safa import SPEC as SAFA_SPEC
from tests.test_leaderboard import _result, _row, _write

MEASURED = {"params_m": 29.8, "gmacs": 40.0}
QUICK_SIZES = {"ground_size": [32, 128], "aerial_size": [32, 128]}


def _cells(text: str, headers: str, start: str) -> dict[str, str]:
    """The row of TEXT starting with START, keyed by the header row starting with HEADERS."""
    return dict(zip(_row(text, headers), _row(text, start), strict=True))


def _profile(variant: str, overrides: dict[str, Any], rep: dict[str, Any]) -> dict[str, str]:
    row = {
        "plugin": "safa", "variant": variant, **MEASURED, "gflops": 2 * MEASURED["gmacs"],
        "input_ground": [112, 616], "input_aerial": [112, 616], "latency_ms": 1.0,
        "throughput": 1.0, "batch_size": 1, "peak_memory_mb": 1.0, "uncounted_ops": [],
        "model_overrides": overrides, "reported_cost": rep,
    }  # fmt: skip
    return _cells(render_profile_table([row], wide=True), "| method", "| safa")


def _leaderboard(
    tmp_path: Path, variant: str, overrides: dict[str, Any], rep: dict[str, Any]
) -> dict[str, str]:
    card = CardSnapshot.of(SAFA_SPEC.card).model_copy(update={"reported_cost": rep})
    config = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "loss": "x", "model": overrides}
    run = _result("safa", 0, 50.0, variant=variant, card=card, config=config,
                  profile={**MEASURED, "latency_ms": 1.0, "descriptor_dim": 8})  # fmt: skip
    text = render(_write(tmp_path / "results", run), tmp_path)[0]
    return _cells(text.split("## Cost")[1], "| method", "| [safa]")


@pytest.mark.parametrize(
    ("card_variant", "variant", "overrides", "compared"),
    [
        ("paper", "paper", {}, True),
        ("paper", "paper", {"pretrained": True}, True),  # weights do not change cost
        ("paper", "paper", QUICK_SIZES, False),  # the quick regime's inputs: not the paper's
        ("paper", "tiny", {}, False),
        ("128x512", "128x512", {}, True),  # a card may name another variant for its figures
        ("128x512", "paper", {}, False),
    ],
)
def test_profile_and_leaderboard_compare_the_same_runs_with_the_paper(
    tmp_path: Path, card_variant: str, variant: str, overrides: dict[str, Any], compared: bool
) -> None:
    rep = {**SAFA_SPEC.card.reported_cost, "variant": card_variant}
    profile = _profile(variant, overrides, rep)
    board = _leaderboard(tmp_path, variant, overrides, rep)
    for column in ("Δ params", "Δ compute"):
        assert profile[column] == board[column], column
        assert (profile[column] != "-") == compared, column
    if compared:  # SAFA's 29.5 M and 42.24 GMACs against the measured 29.8 M and 40.0
        assert (board["Δ params"], board["Δ compute"]) == ("+1.0%", "-5.3%")
