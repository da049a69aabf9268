"""Robustness protocols on the leaderboard: extra R@1 columns of the aligned rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.leaderboard import leaderboard_command, render
from benchmark.results import RunResult
from tests.test_leaderboard import _result, _row, _write

TRAINED = {"epochs_completed": 1}


def _evaluated(plugin: str, seed: int, r1: float, protocol: str, **over: Any) -> RunResult:
    """A run that evaluated the checkpoint of the aligned run of PLUGIN and SEED under
    PROTOCOL (eval --weights: epochs 0, that run as its parent)."""
    config = {**_result(plugin, seed, r1).config, "epochs": 0, "protocol": protocol}
    config["protocol_seed"] = 0
    over.setdefault("parent", _result(plugin, seed, r1).stem())
    return _result(plugin, seed, r1, protocol=protocol, config=config, **over)


def test_robustness_runs_are_columns_of_their_trained_rows(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "results",
        *(_result("safa", s, 50.0 + 2 * s, training=TRAINED) for s in range(3)),
        *(_evaluated("safa", s, 20.0 + 2 * s, "unknown-orientation") for s in range(3)),
        *(_evaluated("safa", s, 10.0 + 2 * s, "fov=90") for s in range(2)),
        _result("saig", 0, 30.0, training=TRAINED),
        _evaluated("saig", 0, 5.0, "fov=180"),
    )
    text, _, warnings = render(folder, tmp_path)
    assert not warnings
    headers = _row(text, "| method")  # the main table's
    assert headers[headers.index("R@1%") + 1 :][:3] == [
        "R@1 unknown-orientation",
        "R@1 FoV 180°",
        "R@1 FoV 90°",
    ]
    safa, saig = _row(text, "| [safa]"), _row(text, "| [saig]")
    at = {h: i for i, h in enumerate(headers)}
    assert safa[at["seeds"]] == "3" and safa[at["R@1"]] == "52.00 ± 4.97"
    assert safa[at["R@1 unknown-orientation"]] == "22.00 ± 4.97 (3)"
    assert safa[at["R@1 FoV 90°"]] == "11.00 ± 12.71 (2)"
    assert safa[at["R@1 FoV 180°"]] == "-"  # no safa run under that protocol
    assert saig[at["R@1 FoV 180°"]] == "5.00 (1)" and saig[at["R@1 unknown-orientation"]] == "-"
    assert safa[at["loss"]] == "x" and "(not trained)" not in text
    main = text.split("### ")[0].splitlines()
    assert sum(line.startswith("| [safa]") for line in main) == 1
    detail = text.split("### cvusa / test: robustness protocols")[1]
    assert _row(detail, "| [safa]   | tiny      | quick    | unknown-orientation")[4:] == [
        "3", "22.00 ± 4.97", "32.00 ± 4.97", "42.00 ± 4.97", "52.00 ± 4.97",
    ]  # fmt: skip
    assert "FoV 90°" in detail and "| [saig]" in detail


def test_evaluations_of_weights_from_elsewhere_keep_a_row_of_their_own(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "results",
        _result("safa", 0, 50.0, training=TRAINED),
        _evaluated("safa", 0, 20.0, "fov=90", parent=None),  # weights from elsewhere
        _evaluated("safa", 1, 30.0, "fov=90"),  # its run (seed 1) is not in the folder
    )
    text = render(folder, tmp_path)[0]
    rows = [line for line in text.split("###")[0].splitlines() if line.startswith("| [safa]")]
    assert len(rows) == 2  # the trained row, and one for both evaluations (same settings)
    fov90 = _row(text, "| method").index("R@1 FoV 90°")
    assert "(not trained)" not in rows[0] and _row(rows[0], "|")[fov90] == "-"
    assert "(not trained)" in rows[1] and _row(rows[1], "|")[fov90] == "25.00 ± 63.53 (2)"


def test_an_evaluation_joins_the_row_of_its_parent_not_of_look_alikes(tmp_path: Path) -> None:
    trained = _result("safa", 0, 50.0, training=TRAINED)
    options = {**trained.model_options, "heads": 4}
    other = _result("safa", 0, 40.0, training=TRAINED, model_options=options, options_tag="-o4")
    folder = _write(
        tmp_path / "results",
        trained,
        other,
        _evaluated("safa", 0, 20.0, "fov=90", parent=other.stem()),  # looks like `trained`
        _evaluated("safa", 0, 10.0, "fov=180", parent="gone"),  # its run is not in the folder
    )
    text = render(folder, tmp_path)[0]
    headers = _row(text, "| method")
    main = text.split("###")[0].splitlines()
    rows = {r[2]: r for line in main if line.startswith("| [safa]") and (r := _row(line, "|"))}
    assert set(rows) == {"epochs=0, heads=null", "epochs=1, heads=4", "epochs=1, heads=null"}
    assert rows["epochs=1, heads=4"][headers.index("R@1 FoV 90°")] == "20.00 (1)"
    assert rows["epochs=0, heads=null"][headers.index("R@1 FoV 180°")] == "10.00 (1)"
    assert rows["epochs=1, heads=null"][headers.index("R@1 FoV 90°")] == "-"


def test_a_section_with_only_robustness_runs_renders_them(tmp_path: Path) -> None:
    folder = _write(tmp_path / "results", _evaluated("safa", 0, 20.0, "unknown-orientation"))
    text, plots, _ = render(folder, tmp_path)
    headers = _row(text, "| method")
    assert "seeds" not in headers and "R@1" not in headers
    cells = _row(text, "| [safa]")
    assert cells[headers.index("R@1 unknown-orientation")] == "20.00 (1)"
    assert "No aligned runs here." in text and "### cvusa / test: robustness protocols" in text
    assert not plots


def test_check_fails_when_a_robustness_result_changes(tmp_path: Path) -> None:
    run = _evaluated("safa", 0, 20.0, "fov=90")
    folder = _write(tmp_path / "results", _result("safa", 0, 50.0, training=TRAINED), run)
    page = tmp_path / "LEADERBOARD.md"
    assert leaderboard_command(folder, page, check=False) == 0
    assert leaderboard_command(folder, page, check=True) == 0
    path = folder / run.filename()
    data = json.loads(path.read_text())
    data["metrics"]["R@10"] = 99.0  # shown in the detail table only
    path.write_text(json.dumps(data))
    assert leaderboard_command(folder, page, check=True) == 1
