"""The leaderboard: a deterministic page (and plots) rendered from result files alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmark import results
from benchmark.leaderboard import leaderboard_command, render
from benchmark.leaderboard.figures import Point, pareto_front
from benchmark.metrics import METRICS
from benchmark.registry import registry
from benchmark.results import CardSnapshot, RunResult

ROOT = Path(__file__).resolve().parent.parent


def _result(plugin: str, seed: int, r1: float, **over: Any) -> RunResult:
    fields: dict[str, Any] = {
        "plugin": plugin,
        "variant": "tiny",
        "regime": "quick",
        "dataset": "cvusa",
        "split": "test",
        "seed": seed,
        "status": "ok",
        "metrics": {"R@1": r1, "R@5": r1 + 10, "R@10": r1 + 20, "R@1%": r1 + 30, "R@1%_k": 2},
        "profile": {"params_m": 2.26, "gmacs": 0.27, "latency_ms": 5.0, "descriptor_dim": 2048},
        "config": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "loss": "x"},
        "model_options": {"polar": True, "ground_size": [32, 128], "aerial_size": [32, 128]},
        "env": {"device": "cpu", "threads": 2},
        "dataset_info": {"train_pairs": 48, "test_queries": 24, "test_references": 24},
    }
    fields.update(over)
    fields.setdefault("display", results.displays(METRICS, fields["metrics"]))
    spec = registry().models.get(plugin)
    fields.setdefault("card", CardSnapshot.of(spec.card) if spec else None)
    return RunResult(**fields)


def _write(folder: Path, *runs: RunResult) -> Path:
    for run in runs:
        results.write(run, folder)
    return folder


def _row(text: str, start: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """Three SAFA seeds and a failed SAIG run on CVUSA, one synthetic run, one corrupt file."""
    folder = _write(
        tmp_path / "results",
        _result("safa", 0, 50.0),
        _result("safa", 1, 52.0, profile={}),  # cost profiled on some seeds only
        _result("safa", 2, 54.0),
        _result("saig", 0, 0.0, status="failed", error="ValueError: bad shape\n  traceback"),
        _result("safa", 0, 10.0, dataset="synthetic"),
    )
    (folder / "broken.json").write_text("{not json")
    return folder


def test_page_shows_mean_interval_seeds_cost_paper_and_failures(
    board: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page" / "LEADERBOARD.md"
    assert leaderboard_command(board, page, check=False) == 0
    assert "broken.json" in capsys.readouterr().err
    text = page.read_text()
    cvusa = text.split("## cvusa / test")[1].split("## ")[0]
    cells = _row(cvusa, "| [safa]")
    assert cells[1:4] == ["tiny", "quick", "32x128 / 32x128"]
    assert cells[6:11] == ["3", "52.00 ± 4.97", "62.00 ± 4.97", "72.00 ± 4.97", "82.00 ± 4.97"]
    assert cells[11:15] == ["2.26", "0.27", "5.0", "2,048"]
    assert cells[15:] == ["89.84", "-37.84"]  # the paper's CVUSA R@1 beside ours, never mixed
    assert "seeds 0 / 1 / 2" in cvusa and "device cpu (2 threads)" in cvusa
    synthetic = text.split("## synthetic / test")[1].split("## ")[0]
    assert _row(synthetic, "| [safa]")[-2:] == ["-", "-"]  # no paper numbers for the world
    failed = text.split("## Failed runs")[1]
    assert "| saig " in failed and "ValueError: bad shape" in failed and "traceback" not in failed
    assert "| [saig]" not in cvusa
    assert "[safa]: https://papers.nips.cc/" in text
    cost = text.split("## Cost")[1]
    safa_cost = _row(cost, "| [safa]")
    assert safa_cost[3:5] == ["3", "2.26"]  # 3 profiled runs over both datasets
    assert safa_cost[8] == "29.50"  # SAFA's reported parameters beside ours
    for name in ("recall-cvusa-test.png", "pareto-cvusa-test.png", "recall-synthetic-test.png"):
        assert f"(plots/{name})" in text
        assert (page.parent / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_check_passes_when_current_and_fails_when_a_result_is_altered(
    board: Path, tmp_path: Path
) -> None:
    page = tmp_path / "LEADERBOARD.md"
    assert leaderboard_command(board, page, check=True) == 1  # not rendered yet
    assert leaderboard_command(board, page, check=False) == 0
    before = (tmp_path / "plots" / "recall-cvusa-test.png").read_bytes()
    assert leaderboard_command(board, page, check=True) == 1  # broken.json is not accepted
    (board / "broken.json").unlink()
    assert leaderboard_command(board, page, check=True) == 0
    assert leaderboard_command(board, page, check=False) == 0
    assert page.read_text() == render(board, tmp_path)[0]
    assert (tmp_path / "plots" / "recall-cvusa-test.png").read_bytes() == before
    path = board / _result("safa", 1, 0.0).filename()
    data = json.loads(path.read_text())
    data["metrics"]["R@1"] = 99.0
    path.write_text(json.dumps(data))
    assert leaderboard_command(board, page, check=True) == 1


def test_named_settings_and_dataset_metrics_get_their_own_rows_and_columns(
    tmp_path: Path,
) -> None:
    def saig(seed: int, head: str, r1: float) -> RunResult:
        opts = {"polar": False, "ground_size": [32, 128], "aerial_size": [64, 64], "head": head}
        metrics = {"R@1": r1, "R@5": 1.0, "R@10": 2.0, "R@1%": 3.0, "hit_rate": 40.0}
        metrics["acc@10m"] = 20.0 + seed
        metrics["accuracy_curve"] = {"thresholds_m": [1.0, 10.0, 100.0], "accuracy": [r1, 50, 90]}
        return _result(
            "saig", seed, r1, dataset="vigor", split="same-area", model_options=opts,
            metrics=metrics,
        )  # fmt: skip

    folder = _write(
        tmp_path / "r", saig(0, "smd", 30.0), saig(1, "smd", 32.0), saig(2, "gap", 10.0)
    )
    text, plots, warnings = render(folder, tmp_path)
    assert not warnings
    headers = _row(text, "| method")
    assert headers[2] == "setting" and "hit rate" in headers and "acc@10m" in headers
    smd, gap = (
        _row(text, "| [saig]   | tiny      | head=smd"),
        _row(text, "| [saig]   | tiny      | head=gap"),
    )
    assert smd[headers.index("seeds")] == "2" and gap[headers.index("seeds")] == "1"
    assert smd[headers.index("acc@10m")] == "20.50 ± 6.35"  # one file per seed: seeds 0, 1
    assert text.index("head=smd") < text.index("head=gap")  # ranked by R@1
    assert smd[headers.index("polar")] == "no"
    metre_plot = next(p for p in plots if p.path.startswith("plots/metres-"))
    assert [c.y for c in metre_plot.data] == [(31.0, 50.0, 90.0), (10.0, 50.0, 90.0)]
    metre_plot.write(tmp_path)
    assert (tmp_path / metre_plot.path).read_bytes()[:4] == b"\x89PNG"
    assert {p.path for p in plots} == {
        "plots/recall-vigor-same-area.png",
        "plots/pareto-vigor-same-area.png",
        "plots/metres-vigor-same-area.png",
    }


def test_tuning_search_is_a_table_and_each_row_names_its_tuned_setting(tmp_path: Path) -> None:
    """Tuning runs (split validation) are not ranked with test results: they fill the
    dataset's tuning table, the test rows' point is bold there and in their `tuned` cell, and
    the test runs' validation curves are drawn against training compute."""

    def tuning(plugin: str, lr: float, r1: float, **over: Any) -> RunResult:
        config = {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": lr, "loss": "x"}
        run_id = f"{round(lr * 1e6):08x}"  # each point its own file
        return _result(
            plugin, 0, r1, split="validation", config=config, profile={}, run_id=run_id, **over
        )

    def tested(plugin: str, seed: int, lr: float, r1: float, curve: list[float]) -> RunResult:
        config = {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": lr, "loss": "x"}
        history = [
            {"epoch": e, "loss": 0.5, "lr": lr, "pairs_seen": 40 * e, "val_R@1": v}
            for e, v in enumerate(curve, 1)
        ]
        return _result(plugin, seed, r1, config=config, training={"history": history})

    folder = _write(
        tmp_path / "r",
        tuning("safa", 1e-4, 40.0),
        tuning("safa", 3e-3, 60.0),
        tuning("saig", 1e-4, 30.0),
        tuning("saig", 3e-3, 0.0, status="failed", error="The loss became nan"),
        tested("safa", 0, 3e-3, 50.0, [20.0, 60.0]),
        tested("safa", 1, 3e-3, 52.0, [30.0, 70.0]),
        tested("saig", 0, 1e-4, 20.0, [10.0, 30.0]),
        _result("raw-pixels", 0, 5.0, profile={"gmacs": 0.0}),
    )
    text, plots, warnings = render(folder, tmp_path)
    assert not warnings and "## cvusa / validation" not in text
    headers = _row(text, "| method")
    assert headers[headers.index("loss") + 1] == "tuned"
    safa, saig = _row(text, "| [safa]"), _row(text, "| [saig]")
    assert safa[headers.index("tuned")] == "lr 0.003" and safa[headers.index("seeds")] == "2"
    assert _row(text, "| raw-pixels")[headers.index("tuned")] == "- (not tuned)"
    assert saig[headers.index("tuned")] == "lr 0.0001"
    search = text[text.index("### cvusa: tuning") :]
    assert _row(search, "| method") == ["method", "lr 0.0001", "lr 0.003"]
    assert _row(search, "| [safa]") == ["[safa]", "40.00", "**60.00**"]
    assert _row(search, "| [saig]") == ["[saig]", "**30.00**", "failed"]
    curves = next(p for p in plots if p.path == "plots/training-cvusa-test.png")
    by_label = {c.label.split(" ")[0]: c for c in curves.data}
    assert set(by_label) == {"safa", "saig"}  # raw-pixels did not train
    assert by_label["safa"].x == pytest.approx((40 * 0.27, 80 * 0.27))  # GMACs x pairs seen
    assert by_label["safa"].y == (25.0, 65.0)


def test_a_row_names_the_settings_it_does_not_share_with_its_section(tmp_path: Path) -> None:
    config = {"epochs": 6, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "loss": "x"}
    folder = _write(
        tmp_path / "r",
        _result("safa", 0, 50.0, config=config, training={"epochs_completed": 6}),
        _result("safa", 1, 52.0, config=config, training={"epochs_completed": 6}),
        _result("saig", 0, 30.0, config={**config, "epochs": 2}, training={"epochs_completed": 2}),
        _result("raw-pixels", 0, 3.0, config={**config, "epochs": 0}),  # trained nothing
    )
    section = render(folder, tmp_path)[0].split("## cvusa / test")[1]
    assert "; epochs 6; batch 8;" in section  # the section's setting: what most runs had
    assert "names what differs under setting" in section
    headers = _row(section, "| method")
    assert _row(section, "| [saig]")[headers.index("setting")] == "epochs=2"
    assert _row(section, "| [safa]")[headers.index("setting")] == "-"
    assert _row(section, "| raw-pixels")[headers.index("setting")] == "-"  # no recipe to name


def test_a_latency_timed_under_load_is_marked_as_not_comparable(tmp_path: Path) -> None:
    quiet = {"params_m": 2.0, "gmacs": 0.3, "latency_ms": 2.7, "load_per_core": 0.4}
    busy = {**quiet, "latency_ms": 187.7, "load_per_core": 3.2}
    folder = _write(
        tmp_path / "r",
        _result("safa", 0, 50.0, profile=busy),
        _result("saig", 0, 30.0, profile=quiet),
    )
    text = render(folder, tmp_path)[0]
    section, cost = text.split("## cvusa / test")[1].split("## Cost")
    headers = _row(section, "| method")
    assert _row(section, "| [safa]")[headers.index("latency ms")] == "187.7 †"
    assert _row(section, "| [saig]")[headers.index("latency ms")] == "2.7"
    note = "† latency timed while the 1-minute load average was above 1.5 per core (safa tiny 3.20)"
    assert note in section and note in cost and "not comparable" in cost
    headers = _row(cost, "| method")
    assert _row(cost, "| [safa]")[headers.index("latency ms")] == "187.7 †"
    assert _row(cost, "| [saig]")[headers.index("latency ms")] == "2.7"


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [Point("a", 1.0, 10.0, 0), Point("b", 2.0, 5.0, 0), Point("c", 3.0, 20.0, 0)]
    assert [p.label for p in pareto_front(pts)] == ["a", "c"]
    assert [p.label for p in pareto_front(pts, higher_is_better=False)] == ["a", "b"]


def test_committed_leaderboard_is_what_the_committed_results_render() -> None:
    page = ROOT / "leaderboard" / "LEADERBOARD.md"
    assert leaderboard_command(ROOT / "leaderboard" / "results", page, check=True) == 0
