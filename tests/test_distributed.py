"""torchrun: a 2-process gloo run equals a single process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmark import distributed
from benchmark.descriptors import Descriptors, load_descriptors
from benchmark.distributed import GlobalBatchNorm, World
from benchmark.errors import BenchmarkError
from benchmark.results import RunResult
from tests.conftest import TINY_WORLD
from tests.test_synthetic_vigor import VIGOR_WORLD

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def _sets(options: dict[str, Any]) -> list[str]:
    return [a for k, v in options.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _run(tmp_path: Path, launcher: list[str], *args: str) -> RunResult:
    args = (
        "run",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--results-dir",
        str(tmp_path),
        "--set",
        "profile=false",
        *args,
    )
    out = subprocess.run(
        [*launcher, "-m", "benchmark", *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("*.json")
    return RunResult.model_validate_json(path.read_text())


# Why SGD: DDP sums gradients in another order than one process, so the two runs differ by
# float32 rounding (~1e-7 relative). SGD carries such a difference forward linearly (the update
# is lr * g), so after 12 steps losses and descriptors still agree to ~1e-6. Adam divides by
# sqrt(v): a weight whose true gradient is ~0 gets an update of up to ~lr from rounding noise
# alone, so Adam runs drift apart by ~1e-3 on some CPUs and not others. What DDP must get
# right (gathered in-batch negatives, global-batch BatchNorm, averaged gradients) does not
# depend on the optimizer. The bugs this catches move the losses by percent: gradients summed
# instead of averaged (= twice the learning rate) change the second epoch's loss by 7%, and
# per-rank BatchNorm changes the first step's outputs.
# selection=last: these tests compare training, not the choice of an epoch on validation
# One schedule for both sides, as the tolerances below were sized for: no validation split,
# and no warm-up (SAFA's quick setting has one; its larger late steps grow the ranks'
# rounding differences to ~7e-4 of the loss in two epochs, with identical learning rates).
SGD = {"optimizer": "sgd", "lr": 0.02, "selection": "last", "val_fraction": 0, "warmup_epochs": 0}
LOSS_REL = 1e-4  # rounding-level differences are ~1e-7..1e-6; real faults are >= 1e-2
DESCRIPTOR_ATOL = 1e-4  # likewise; a gather in the wrong order differs by ~1e-1


def _descriptors(folder: Path, result: RunResult) -> Descriptors:
    return load_descriptors(folder / result.files["descriptors"])


def _undecided_share(ddp: Descriptors, single: Descriptors, positives: np.ndarray) -> float:
    """Percent of queries whose rank or top-1 the descriptors' difference could change.

    Scores are inner products of unit vectors, so a score moves by at most
    E = |dg| + |da| + |dg||da| (L2 norms of the largest changes). A query's rank (references
    scoring above its match) and its top-1 can only change when two of its scores that
    decide them lie within 2E; every recall and hit rate is a mean of per-query indicators
    of those, so the two runs' metrics differ by at most this share.
    """
    dg = (ddp.ground - single.ground).norm(dim=1).max().item()
    da = (ddp.aerial - single.aerial).norm(dim=1).max().item()
    margin = 2 * (dg + da + dg * da)
    scores = (single.ground @ single.aerial.T).double().numpy()
    rows = np.arange(len(scores))
    true = scores[rows, positives]
    near_match = np.abs(scores - true[:, None]) <= margin
    near_match[rows, positives] = False
    top2 = np.sort(scores, axis=1)[:, -2:]
    near_top = top2[:, 1] - top2[:, 0] <= margin
    return 100.0 * np.mean(near_match.any(axis=1) | near_top)


def _assert_same_run(tmp_path: Path, ddp: RunResult, single: RunResult, keys: tuple) -> None:
    for a, b in zip(ddp.training["history"], single.training["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=LOSS_REL)
    gathered = _descriptors(tmp_path / "ddp", ddp)
    alone = _descriptors(tmp_path / "single", single)
    torch.testing.assert_close(gathered.ground, alone.ground, atol=DESCRIPTOR_ATOL, rtol=0)
    torch.testing.assert_close(gathered.aerial, alone.aerial, atol=DESCRIPTOR_ATOL, rtol=0)
    positives = np.load(tmp_path / "single" / single.files["retrieval"])["positives"]
    bound = _undecided_share(gathered, alone, positives)
    assert bound < 50, "the descriptors are too close to ties for the metrics to say anything"
    for key in keys:
        assert abs(ddp.metrics[key] - single.metrics[key]) <= bound + 1e-9, key


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    args = [
        *("--plugins", "safa", "--dataset", "synthetic", "--batch-size", "8"),
        "--save-descriptors",
        # dropout draws its masks per rank, so only a model without it matches bit for bit
        *_sets(
            {
                "model.dropout": 0,
                **SGD,
                **{f"dataset_options.{k}": v for k, v in TINY_WORLD.items()},
            }
        ),
    ]
    ddp = _run(tmp_path / "ddp", [*TORCHRUN, "2"], *args)
    single = _run(tmp_path / "single", [sys.executable], *args)
    assert ddp.env["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "per_rank_batch": 4,
        "global_batch": 8,
    }
    assert "distributed" not in single.env
    _assert_same_run(tmp_path, ddp, single, ("R@1", "R@5", "R@10", "R@1%"))


VIGOR_ARGS = ["--plugins", "vigor", "--dataset", "synthetic-vigor", "--split", "same-area"]
VIGOR_OPTIONS = {
    **{f"dataset_options.{k}": v for k, v in VIGOR_WORLD.items()},
    "loss_options.stage1_epochs": 1,
    "model.ground_size": [16, 64],
    "model.aerial_size": [32, 32],
    "model.offset_hidden": 8,
    "model.dropout": 0,
}


def test_staged_loss_with_semi_positives_matches_one_process(tmp_path: Path) -> None:
    """VIGOR: the offset head is unused in the triplet stage, and the semi-positive pick
    depends on (seed, epoch, index) only."""
    # mining is off: its top-k among near-equal descriptors of a barely trained model can
    # flip on float rounding, which changes batches (tested on its own below)
    options = {**VIGOR_OPTIONS, **SGD, "mining": False}
    args = [*VIGOR_ARGS, "--batch-size", "4", "--save-descriptors", *_sets(options)]
    ddp = _run(tmp_path / "ddp", [*TORCHRUN, "2"], *args)
    single = _run(tmp_path / "single", [sys.executable], *args)
    assert ddp.training["epochs_completed"] == 2
    assert ddp.env["distributed"]["per_rank_batch"] == 2
    _assert_same_run(tmp_path, ddp, single, ("R@1", "R@5", "hit_rate"))


def test_mining_trains_under_torchrun(tmp_path: Path) -> None:
    """Every rank's mining cache sees the global batch, so ranks mine the same batches."""
    args = [*VIGOR_ARGS, "--batch-size", "4", *_sets({**VIGOR_OPTIONS, "mining": True})]
    result = _run(tmp_path, [*TORCHRUN, "2"], *args)
    assert result.training["epochs_completed"] == 2 and result.config["mining"] is True


@pytest.mark.parametrize("n", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_every_index_once_in_order(n: int, size: int) -> None:
    shards = [distributed.shard(n, World(rank, size)) for rank in range(size)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_rank_slices_split_each_global_batch() -> None:
    batches = [[0, 1, 2, 3], [4, 5, 6, 7]]
    slices = [list(distributed.RankSlices(batches, World(r, 2))) for r in range(2)]
    assert slices == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]


def test_uneven_global_batch_is_a_clear_error() -> None:
    with pytest.raises(BenchmarkError, match="--batch-size 6 or 9"):
        distributed.per_rank_batch(World(0, 3), 7)


def test_batchnorm_sync_is_reversible_and_keeps_the_state() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(2)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[1].weight
    with distributed.global_batchnorm(model, World(0, 2)):
        assert isinstance(model[1], GlobalBatchNorm) and isinstance(model[2][0], GlobalBatchNorm)
        assert model[1].weight is weight  # the optimizer's parameters stay the same objects
    assert type(model[1]) is nn.BatchNorm2d and type(model[2][0]) is nn.BatchNorm1d
    assert model.state_dict().keys() == before.keys()
