"""The leaderboard needs the result files only: no torch, no plugin, older files migrated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import results
from benchmark.cli import main
from benchmark.leaderboard import render
from tests.test_leaderboard import _result, _row, _write

ROOT = Path(__file__).resolve().parent.parent

# Runs `leaderboard --check` on the committed board in a process where torch, timm and the
# plugins cannot be imported, as on a machine where they are not installed.
WITHOUT_TORCH = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "timm", "plugins", "faiss", "pluggy"}:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, NotInstalled())
from benchmark.cli import main
sys.exit(main(["leaderboard", "--check"]))
"""


def test_check_of_the_committed_board_needs_neither_torch_nor_plugins() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is up to date" in done.stdout and "warning" not in done.stderr


def test_a_card_recorded_in_the_results_is_shown_without_its_plugin(tmp_path: Path) -> None:
    card = _result("safa", 0, 0.0).card.model_copy(
        update={"title": "Not Installed Net", "reported": {"cvusa": {"R@1": 60.0}}}
    )
    folder = _write(tmp_path / "r", _result("notinstalled", 0, 50.0, card=card))
    text = render(folder, tmp_path)[0]
    assert _row(text, "| [notinstalled]")[-2:] == ["60.00", "-10.00"]
    assert "- [notinstalled]: Not Installed Net. Yujiao Shi" in text
    assert "[notinstalled]: https://papers.nips.cc/" in text


def _schema1(result: results.RunResult, folder: Path) -> Path:
    """RESULT written as a file of schema 1 (before results carried card, display, parent)."""
    data = result.model_dump(mode="json")
    for key in ("schema_version", "card", "plugin_package", "display", "parent", "migrated_from"):
        del data[key]
    path = folder / result.filename()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_migrate_fills_card_package_and_parent_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "results"
    checkpoint = folder / "checkpoints" / "run" / "epoch-00001"
    trained = _result("safa", 0, 50.0, training={"epochs_completed": 1})
    trained.training["checkpoint"] = str(checkpoint)
    config = {**trained.config, "epochs": 0}
    evaluation = _result("safa", 0, 20.0, protocol="fov=90", config=config)
    evaluation.training["weights"] = str(checkpoint / "model.safetensors")
    gone = _result("gone", 0, 10.0, dataset="synthetic")
    paths = [_schema1(r, folder) for r in (trained, evaluation, gone)]
    before = render(folder, tmp_path)[0].split("## synthetic")[0]
    assert "(not trained)" in before and "[safa]" not in before  # no parent, no card yet

    assert main(["leaderboard", "migrate", "--results-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "method 'gone' is not installed here, so 1 of its result files were left" in err
    migrated = [json.loads(p.read_text()) for p in paths]
    assert [m.get("schema_version") for m in migrated] == [2, 2, None]
    assert migrated[0]["card"]["title"].startswith("Spatial-Aware Feature Aggregation")
    assert migrated[0]["plugin_package"]["package"] == "cvgl-benchmark"
    assert migrated[1]["parent"] == paths[0].stem and migrated[0]["migrated_from"] == 1
    assert migrated[1]["metrics"] == evaluation.model_dump(mode="json")["metrics"]
    after = render(folder, tmp_path)[0]
    assert "(not trained)" not in after.split("## synthetic")[0]
    assert "[safa]: https://papers.nips.cc/" in after
    headers = _row(after, "| method")
    assert _row(after, "| [safa]")[headers.index("R@1 FoV 90°")] == "20.00 (1)"
    assert main(["leaderboard", "migrate", "--results-dir", str(folder)]) == 1
    assert "0 file(s) migrated" in capsys.readouterr().out  # once: current files are kept


def test_the_committed_results_are_the_current_schema() -> None:
    for path in sorted((ROOT / "leaderboard" / "results").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["schema_version"] == 2 and data["card"] is not None, path.name
