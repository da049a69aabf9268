"""The leaderboard accepts only valid results: bad values, duplicates and hostile text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmark.leaderboard import leaderboard_command, render
from benchmark.results import RunResult
from tests.test_leaderboard import _result, _row, _write


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the JSON of the result file at PATH as a hand edit (or a broken writer) would."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json writes NaN and Infinity as bare words


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


BAD = {
    "NaN recall": _set("metrics", "R@1", value=float("nan")),
    "infinite recall": _set("metrics", "R@5", value=float("inf")),
    "string recall": _set("metrics", "R@1", value="52"),
    "recall above 100": _set("metrics", "R@10", value=100.5),
    "negative recall": _set("metrics", "R@1", value=-1.0),
    "negative distance": _set("metrics", "median_error_m", value=-3.0),
    "curve point above 100": _set("metrics", "accuracy_curve", "accuracy", 1, value=101.0),
    "string in another metric": _set("metrics", "queries", value="many"),
    "NaN latency": _set("profile", "latency_ms", value=float("nan")),
    "string epochs": _set("config", "epochs", value="six"),
    "NaN learning rate": _set("config", "lr", value=float("nan")),
    "NaN paper number": _set("card", "reported", "cvusa", "R@1", value=float("nan")),
    "newer schema": _set("schema_version", value=99),
    "empty record": lambda data: data.clear(),
}


@pytest.fixture
def three_seeds(tmp_path: Path) -> Path:
    """Three SAFA seeds with metre metrics (R@1 50, 52, 54)."""
    metrics = {"acc@10m": 20.0, "median_error_m": 12.0}
    metrics["accuracy_curve"] = {"thresholds_m": [1.0, 10.0], "accuracy": [5.0, 20.0]}
    runs = []
    for seed in range(3):
        run = _result("safa", seed, 50.0 + 2 * seed)
        runs.append(_result("safa", seed, 50.0 + 2 * seed, metrics={**run.metrics, **metrics}))
    return _write(tmp_path / "results", *runs)


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_invalid_result_is_rejected_by_name_and_fails_the_check(
    three_seeds: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = three_seeds / _result("safa", 2, 0.0).filename()
    _edit(bad, BAD[case])
    text, _, warnings = render(three_seeds, tmp_path)
    assert len(warnings) == 1 and str(bad) in warnings[0]
    page = tmp_path / "LEADERBOARD.md"
    page.write_text(text)  # the page is current: the check fails for the rejected file alone
    assert leaderboard_command(three_seeds, page, check=True) == 1
    err = capsys.readouterr().err
    assert f"{bad}" in err and "not accepted" in err and "Traceback" not in err
    cells = _row(text, "| [safa]")
    headers = _row(text, "| method")
    assert cells[headers.index("seeds")] == "2"  # seed 2 is neither shown nor averaged
    assert cells[headers.index("R@1")] == "51.00 ± 12.71"


def test_the_same_run_twice_counts_once_with_a_warning(
    three_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _result("safa", 1, 0.0).filename()
    copy = three_seeds / "backup" / "old" / name
    copy.parent.mkdir(parents=True)
    copy.write_text((three_seeds / name).read_text())
    text, _, warnings = render(three_seeds, tmp_path)
    assert warnings == [f"ignored {copy}: a copy of the run in {three_seeds / name}, counted once"]
    cells, headers = _row(text, "| [safa]"), _row(text, "| method")
    assert cells[headers.index("seeds")] == "3" and cells[headers.index("R@1")] == "52.00 ± 4.97"
    (tmp_path / "LEADERBOARD.md").write_text(text)
    assert leaderboard_command(three_seeds, tmp_path / "LEADERBOARD.md", check=True) == 1
    _edit(copy, _set("metrics", "R@1", value=99.0))  # a stale record of the same run
    text, _, warnings = render(three_seeds, tmp_path)
    assert "a different record of the run" in warnings[0]
    assert _row(text, "| [safa]")[headers.index("R@1")] == "52.00 ± 4.97"


HOSTILE = "x|y\n## z <script>alert(1)</script> [a](javascript:b) `c` *d*"


def test_text_from_result_files_cannot_break_or_inject_into_the_page(tmp_path: Path) -> None:
    card = _result("safa", 0, 0.0).card.model_copy(
        update={"title": HOSTILE, "url": "javascript:alert(1)"}
    )
    folder = _write(
        tmp_path / "results",
        _result("safa", 0, 50.0, variant=HOSTILE, card=card),
        _result("evil", 0, 10.0, dataset=HOSTILE, regime=HOSTILE, options_tag="-x"),
        _result("saig", 0, 0.0, status="failed", error=f"{HOSTILE} and more"),
    )
    text, plots, warnings = render(folder, tmp_path)
    assert not warnings
    assert "<script>" not in text and "javascript:" not in text.replace("javascript:b", "")
    assert "&lt;script&gt;" in text and "x\\|y" in text and "\\[a\\](javascript:b)" in text
    for block in re.findall(r"(?:^\|.*\n)+", text, flags=re.M):  # each table keeps its shape
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(widths) == 1, block
    assert not any(line.startswith("## z") for line in text.splitlines())
    assert "- safa: " in text and "[safa]" not in text  # no link to an unsafe address
    for plot in plots:
        plot.write(tmp_path)  # names with markup still draw
        assert (tmp_path / plot.path).resolve().is_relative_to(tmp_path.resolve())


def _row_count(text: str, method: str) -> int:
    """Rows of METHOD in the first section's main table (before its subsections)."""
    main = text.split("## Cost")[0].split("\n### ")[0]
    return sum(line.startswith(f"| [{method}]") for line in main.splitlines())


def test_infrastructure_fields_and_fields_a_result_predates_do_not_split_rows(
    tmp_path: Path,
) -> None:
    base = _result("safa", 0, 50.0).config
    newer = {**base, "eval_memory_mb": 64, "workers": 3, "device": "cuda", "save_descriptors": True}
    older = base  # no mining_k: written before the field existed
    runs = [
        _result("safa", 0, 50.0, config={**base, "mining_k": 100}),  # the default, recorded
        _result("safa", 1, 52.0, config=newer),
        _result("safa", 2, 54.0, config=older),  # written before mining_k existed
    ]
    text = render(_write(tmp_path / "r", *runs), tmp_path)[0]
    seeds = _row(text, "| method").index("seeds")
    assert _row_count(text, "safa") == 1 and _row(text, "| [safa]")[seeds] == "3"
    changed = _result("safa", 3, 30.0, config={**base, "mining_k": 7})
    text = render(_write(tmp_path / "r", changed), tmp_path)[0]
    assert _row_count(text, "safa") == 2 and "mining_k=7" in text  # an outcome setting does


def test_result_files_written_before_schema_2_are_read_without_plugins(tmp_path: Path) -> None:
    old = _result("safa", 0, 50.0).model_dump(mode="json")
    for key in ("schema_version", "card", "plugin_package", "display", "parent", "migrated_from"):
        del old[key]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "old.json").write_text(json.dumps(old))
    text, _, warnings = render(tmp_path / "r", tmp_path)
    assert not warnings
    headers = _row(text, "| method")
    assert headers[headers.index("seeds") :][:5] == ["seeds", "R@1", "R@5", "R@10", "R@1%"]
    assert "- safa: no card recorded in its results." in text and "[safa]" not in text


def _declared(result: RunResult, **display: Any) -> RunResult:
    return result.model_copy(update={"display": [*result.display, *display.values()]})


def test_a_declared_metric_is_a_column_and_the_declared_key_ranks(tmp_path: Path) -> None:
    from benchmark.specs import MetricDisplay

    lower = MetricDisplay(key="yaw_err", label="yaw error °", higher_is_better=False, rank=True)
    first = [d.model_copy(update={"rank": False}) for d in _result("safa", 0, 0.0).display]
    runs = [
        _result(m, 0, r1, metrics={**_result(m, 0, r1).metrics, "yaw_err": err}, display=first)
        for m, r1, err in (("safa", 60.0, 9.5), ("saig", 40.0, 2.25), ("l2ltr", 50.0, 4.0))
    ]
    folder = _write(tmp_path / "r", *(_declared(r, yaw=lower) for r in runs))
    text = render(folder, tmp_path)[0]
    headers = _row(text, "| method")
    assert headers[-3:] == ["dim", "paper yaw error °", "Δ yaw error °"]
    assert "yaw error °" in headers
    main = text.split("## Cost")[0].splitlines()
    order = [line.split("|")[1].strip() for line in main if line.startswith("| [")]
    assert order == ["[saig]", "[l2ltr]", "[safa]"]  # lower error first, not higher R@1
    assert _row(text, "| [saig]")[headers.index("yaw error °")] == "2.25"


def test_rows_the_seeds_cannot_tell_apart_are_marked(tmp_path: Path) -> None:
    """≈ follows the ranking column of a row that Welch's test cannot tell from the next."""
    scores = [(60.0, 40.0, 39.0), (62.0, 42.0, 43.0), (61.0, 44.0, 41.0)]
    folder = _write(
        tmp_path / "r",
        *[
            _result(plugin, seed, r1)
            for seed, row in enumerate(scores)
            for plugin, r1 in zip(("safa", "saig", "aenet"), row, strict=True)
        ],
    )
    text = render(folder, tmp_path)[0]
    headers = _row(text, "| method")
    at = headers.index("R@1")
    assert not _row(text, "| [safa]")[at].endswith("≈")  # 61 vs 42: told apart
    assert _row(text, "| [saig]")[at].endswith("≈")  # 42 vs 41: not
    assert not _row(text, "| [aenet]")[at].endswith("≈")  # the last row
    assert "Welch's t-test" in text
