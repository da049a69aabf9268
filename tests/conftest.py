"""Shared fixtures: an isolated plugin set, a private world cache, a tiny synthetic world."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

PROJECT_PLUGINS = "core,safa,cvm_net,aenet,l2ltr,saig,vigor"
os.environ["CVGL_BENCHMARK_PLUGINS"] = PROJECT_PLUGINS  # never pick up stray plugins
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # pytest -n 2 runs one worker per core

TINY_WORLD: dict[str, Any] = {
    "n_train": 48,
    "n_test": 24,
    "map_px": 384,
    "ground_px": [32, 128],
    "aerial_px": 48,
    "tile_metres": 48.0,
    "min_spacing": 2.0,
}


torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread() -> Any:
    """One intra-op thread for a module: identical arithmetic in this process and its forked
    children, and no OpenMP spinning on a shared machine (10x faster here under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def in_process(args: list[str], fault: str | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the CLI in this process with the fault hook set to FAULT (or unset)."""
    from benchmark import faults
    from benchmark.cli import main

    faults.reset()
    if fault is None:
        monkeypatch.delenv(faults.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(faults.VARIABLE, fault)
    return main(args)


@pytest.fixture(autouse=True, scope="session")
def _world_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["CVGL_BENCHMARK_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def tiny_run(tmp_path: Path) -> dict[str, Any]:
    """User settings for a seconds-long SAFA run on the tiny world."""
    return {
        "dataset_options": dict(TINY_WORLD),
        "epochs": 2,
        "batch_size": 8,
        "results_dir": tmp_path / "results",
        "device": "cpu",
        "model": {"ground_size": [32, 128], "aerial_size": [32, 128]},
        "profile": False,
    }
