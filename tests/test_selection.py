"""Model selection never looks at the test split: a seeded validation split is carved from the
training pairs, scored after every epoch, and the best epoch's weights are kept and reproduce
the recorded metrics."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from benchmark.config import RunConfig, model_options, resolve
from benchmark.data.base import carve_validation
from benchmark.data.synthetic import build_synthetic
from benchmark.data.synthetic_vigor import build_synthetic_vigor
from benchmark.data.transforms import InputPipeline
from benchmark.evaluate import evaluate
from benchmark.registry import build_registry
from benchmark.results import RunResult
from benchmark.runner import run_job
from benchmark.training import selection as train_module
from benchmark.training.optim import build_schedule
from benchmark.training.selection import best_epoch, validation_r1
from tests.conftest import TINY_WORLD


def rows_of(xy: np.ndarray) -> set[tuple[float, float]]:
    """The positions of a split's panoramas: they name its pairs (no two coincide)."""
    return {tuple(p) for p in np.asarray(xy).tolist()}


def test_validation_split_is_carved_from_training_pairs_only() -> None:
    bundle = build_synthetic(None, "test", TINY_WORLD)
    rest, val = carve_validation(bundle.train, 0.25, seed=0)
    train, val_xy, test = (rows_of(s.ground_xy) for s in (rest, val, bundle.test))
    assert len(val_xy) == val.num_ground == round(0.25 * TINY_WORLD["n_train"])
    assert not train & val_xy and not val_xy & test and not train & test
    assert train | val_xy == rows_of(bundle.train.ground_xy)  # nothing lost
    assert bundle.test.num_ground == TINY_WORLD["n_test"]  # the test split is not touched
    for i in range(val.num_ground):  # each validation panorama keeps its own aerial tile
        row = int(val.load_ground.rows[i])
        assert np.array_equal(val.load_ground(i), bundle.train.load_ground(row))
        tile = bundle.train.positives[row]
        assert np.array_equal(val.load_aerial(val.positives[i]), bundle.train.load_aerial(tile))


def test_validation_split_is_a_function_of_its_seed() -> None:
    train = build_synthetic(None, "test", TINY_WORLD).train
    first = carve_validation(train, 0.25, seed=0)[1].load_ground.rows
    again = carve_validation(train, 0.25, seed=0)[1].load_ground.rows
    other = carve_validation(train, 0.25, seed=1)[1].load_ground.rows
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_vigor_validation_takes_whole_panoramas_with_their_tiles() -> None:
    options = {**TINY_WORLD, "n_train": 60, "n_test": 20, "map_px": 512}
    train = build_synthetic_vigor(None, "same-area", options).train
    rest, val = carve_validation(train, 0.2, seed=0)
    assert rest.num_aerial == train.num_aerial  # training keeps its gallery and tile ids
    rows = val.load_ground.rows
    assert val.num_ground >= round(0.2 * train.num_ground)
    for i, row in enumerate(rows):
        tiles = [val.positives[i], *val.semi_positives[i]]
        originals = [train.positives[row], *train.semi_positives[row]]
        for tile, original in zip(tiles, originals, strict=True):
            assert np.array_equal(val.load_aerial(tile), train.load_aerial(original))
        np.testing.assert_array_equal(val.offsets[i], train.offsets[row])
    # panoramas sharing a positive tile stay together: no validation positive is a training one
    val_tiles = {tuple(p) for p in val.aerial_xy[val.positives].tolist()}
    train_tiles = {tuple(p) for p in rest.aerial_xy[rest.positives].tolist()}
    assert not val_tiles & train_tiles


def test_best_epoch_is_the_first_highest_validation_r1() -> None:
    history = [{"epoch": e, "val_R@1": v} for e, v in enumerate([10.0, 30.0, 30.0, 20.0], 1)]
    assert best_epoch(history) == 2
    assert best_epoch([{"epoch": 1, "loss": 0.5}]) is None


def test_validation_r1_is_the_r_at_1_evaluation_computes(tiny_run: dict[str, Any]) -> None:
    reg = build_registry()
    spec = reg.model("safa")
    cfg = resolve(spec, tiny_run, quick=True)
    torch.manual_seed(0)
    model = spec.build(model_options(spec, cfg))
    bundle = build_synthetic(None, "test", TINY_WORLD)
    val = carve_validation(bundle.train, 0.25, seed=0)[1]
    pipeline = InputPipeline(model.preprocess, bundle.geometry)
    rng = torch.get_rng_state()
    r1 = validation_r1(model, val, pipeline, cfg, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), rng)  # training's random stream is untouched
    report = evaluate(model, val, pipeline, cfg, torch.device("cpu"), [reg.metric("recall")])
    assert r1 == report.metrics["R@1"]


def job(user: dict[str, Any], resume: bool = False, weights: Path | None = None) -> RunResult:
    """One quick-regime SAFA job (selection=best: 10% of the training pairs validate)."""
    reg = build_registry()
    return run_job(reg, resolve(reg.model("safa"), user, quick=True), resume, weights)


def test_the_best_epoch_is_evaluated_and_its_weights_reproduce_it(
    tiny_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = iter([20.0, 80.0, 40.0])  # epoch 2 is the best, 3 the last
    monkeypatch.setattr(train_module, "validation_r1", lambda *args: next(scores))
    result = job({**tiny_run, "epochs": 3})
    assert result.status == "ok", result.error
    training = result.training
    assert [h["val_R@1"] for h in training["history"]] == [20.0, 80.0, 40.0]
    held = round(0.1 * TINY_WORLD["n_train"])  # the quick regime's val_fraction
    assert training["selected_epoch"] == 2 and training["validation"]["pairs"] == held
    weights = Path(training["selected_weights"])
    assert weights.name == "best-epoch-00002.safetensors"
    assert sorted(p.name for p in weights.parent.glob("best-*")) == [weights.name]
    kept = load_file(weights)  # epoch 2's weights, as its checkpoint holds them
    second, third = (load_file(weights.parent / f"epoch-0000{e}/model.safetensors") for e in (2, 3))
    assert all(torch.equal(kept[k], second[k]) for k in kept)
    assert not all(torch.equal(kept[k], third[k]) for k in kept)
    eval_only = {**tiny_run, "epochs": 0}
    again = job(eval_only, weights=weights)
    last = job(eval_only, weights=Path(training["checkpoint"]) / "model.safetensors")
    for key in ("R@1", "R@5", "R@10", "R@1%"):
        assert again.metrics[key] == result.metrics[key]  # the selected model's
        assert last.metrics[key] == training["final_metrics"][key]  # the last epoch's


def test_a_run_that_selects_the_last_epoch_keeps_no_extra_record(
    tiny_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = iter([20.0, 80.0])
    monkeypatch.setattr(train_module, "validation_r1", lambda *args: next(scores))
    result = job({**tiny_run, "epochs": 2})
    assert result.training["selected_epoch"] == 2 and "final_metrics" not in result.training


def test_best_weights_newer_than_a_resumed_checkpoint_are_dropped(
    tiny_run: dict[str, Any],
) -> None:
    first = job({**tiny_run, "epochs": 2})
    folder = Path(first.training["checkpoint"]).parent
    shutil.rmtree(folder / "epoch-00002")  # as if killed after epoch 1's checkpoint
    stale = folder / "best-epoch-00009.safetensors"  # written by a run killed after it
    shutil.copy(first.training["selected_weights"], stale)
    resumed = job({**tiny_run, "epochs": 2}, resume=True)
    assert resumed.status == "ok" and resumed.training["resumed_from"] == 1
    assert not stale.exists() and Path(resumed.training["selected_weights"]).is_file()


def test_warm_up_in_epochs_rises_over_whole_epochs_then_follows_the_schedule() -> None:
    """warmup_epochs=1 at 4 steps an epoch: the learning rate climbs over the first 4 steps,
    then decays by the cosine over the remaining 8; giving both warm-ups is refused."""
    cfg = RunConfig(plugin="safa", lr=1.0, epochs=3, schedule="cosine", warmup_epochs=1)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = build_schedule(cfg, optimizer, steps_per_epoch=4)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])
    with pytest.raises(ValueError, match="warmup_steps or warmup_epochs"):
        RunConfig(plugin="safa", warmup_steps=10, warmup_epochs=1)
