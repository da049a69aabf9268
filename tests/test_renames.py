"""A renamed method (cvm_net -> cvm-net): the old name works wherever a method is named, with
one deprecation line, and results recorded under it are read and rewritten under the new."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark import renames, results
from benchmark.cli import main
from benchmark.identity import digest
from benchmark.leaderboard import render
from benchmark.registry import build_registry
from benchmark.results import CardSnapshot
from benchmark.suite import load_suite, plan
from plugins.cvm_net import SPEC as CVM_NET
from tests.test_leaderboard import _result, _write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no old name used yet."""
    monkeypatch.setattr(renames, "_said", set())


def test_the_old_name_on_the_command_line_says_so_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["config", "show", "--plugins", "cvm_net,safa", "--format", "json"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert [run["plugin"] for run in json.loads(out)] == ["cvm-net", "safa"]
    assert "__cvm-net-" in json.loads(out)[0]["identity"]
    assert err.count("\n") == 1 and "'cvm_net' is deprecated; use 'cvm-net'" in err
    assert main(["show", "cvm_net"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("cvm-net: CVM-Net") and err == ""  # one line per process


def test_a_suite_file_and_the_python_api_accept_the_old_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "suite.yaml"
    file.write_text("results_dir: out\ngroups:\n  - methods: [cvm_net, safa]\n")
    assert [run.method for run in plan(load_suite(file), {})] == ["cvm-net", "safa"]
    reg = build_registry()
    assert reg.model("cvm_net") is reg.model("cvm-net")
    assert reg.provenance("cvm_net").name == "cvm_net"  # the package's entry point
    assert "cvm_net" not in reg.names("models")  # listed under its current name only
    assert capsys.readouterr().err.count("deprecated") == 1


def _old_results(folder: Path) -> tuple[Path, Path]:
    """A trained run recorded under the old name (with its training log) and its FoV 90°
    evaluation (with its ranks file), as the harness wrote them before the rename."""
    card = CardSnapshot.of(CVM_NET.card)
    identity = {"plugin": "cvm_net", "seed": 0, "inputs": {}}
    trained = _result("cvm_net", 0, 5.0, card=card, identity=identity, run_id=digest(identity))
    trained.config["plugin"] = "cvm_net"
    protocol = {**identity, "protocol": "fov=90"}
    evaluation = _result(
        "cvm_net", 0, 2.0, card=card, identity=protocol, run_id=digest(protocol),
        protocol="fov=90", parent=trained.stem(),
    )  # fmt: skip
    evaluation.files = {"retrieval": f"{evaluation.stem()}.retrieval.npz"}
    _write(folder, trained, evaluation)
    (folder / f"{trained.stem()}.log.csv").write_text("epoch,loss\n1,0.5\n")
    (folder / evaluation.files["retrieval"]).write_bytes(b"ranks")
    return folder / trained.filename(), folder / evaluation.filename()


def test_results_under_the_old_name_are_read_and_migrated_under_the_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "results"
    trained, evaluation = _old_results(folder)
    read = results.load(trained)
    assert (read.plugin, read.config["plugin"], read.identity["plugin"]) == ("cvm-net",) * 3
    assert read.run_id == digest(read.identity)  # the hash of the identity under the new name
    before = render(folder, tmp_path)[0]
    assert "[cvm-net]" in before and "cvm_net" not in before
    assert "| 2.00 (1)" in before  # the evaluation joins its run's row through its parent

    assert main(["leaderboard", "migrate", "--results-dir", str(folder)]) == 0
    assert "2 file(s) migrated" in capsys.readouterr().out
    assert not trained.exists() and not evaluation.exists()
    names = sorted(p.name for p in folder.iterdir())
    assert all("__cvm-net-tiny-quick-seed0-" in name for name in names), names
    new = {p.suffixes[-1]: p for p in folder.iterdir()}
    assert new[".csv"].read_text() == "epoch,loss\n1,0.5\n" and new[".npz"].read_bytes() == b"ranks"
    stored = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    trained_now = next(s for s in stored if s["protocol"] == "aligned")
    evaluation_now = next(s for s in stored if s["protocol"] == "fov=90")
    assert evaluation_now["parent"] == results.RunResult(**trained_now).stem()
    assert evaluation_now["files"]["retrieval"] == new[".npz"].name
    assert render(folder, tmp_path)[0] == before  # the same page, from current files
    assert main(["leaderboard", "migrate", "--results-dir", str(folder)]) == 0
    assert "0 file(s) migrated" in capsys.readouterr().out


def test_the_committed_results_use_current_method_names() -> None:
    for path in sorted((ROOT / "leaderboard" / "results").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["plugin"] not in renames.RENAMED_METHODS, path.name
        assert results.RunResult(**data).filename() == path.name
