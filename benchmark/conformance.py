"""The conformance check for plugin authors: a method builds, trains, evaluates, reloads its
checkpoint and is profiled at its tiny variant, through the same code as a run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import BenchmarkError
from benchmark.metrics import RECALLS

if TYPE_CHECKING:
    from benchmark.model import CrossViewModel
    from benchmark.results import RunResult
    from benchmark.specs import ModelOptions

# Generated worlds small enough for a check of a few seconds (8 training pairs: one step).
TINY_WORLDS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "n_train": 8,
        "n_test": 8,
        "map_px": 384,
        "ground_px": [32, 128],
        "aerial_px": 48,
        "tile_metres": 48.0,
        "min_spacing": 2.0,
    },
    "synthetic-vigor": {
        "n_train": 8,
        "n_test": 8,
        "map_px": 384,
        "ground_px": [16, 64],
        "aerial_px": 24,
        "tile_metres": 32.0,
        "min_spacing": 2.0,
        "test_fraction": 0.4,
    },
}


class ConformanceError(AssertionError):
    """A method does not keep the plugin contract; the message lists what is wrong."""


def check_method(name: str, dataset: str = "synthetic") -> RunResult:
    """Check that method NAME keeps the contract at its tiny variant, on a tiny generated
    DATASET ('synthetic' or 'synthetic-vigor'), on the CPU: the model's outputs, one training
    epoch of one step, evaluation, profiling, and that its checkpoint evaluates to the same
    recalls. Return the run's result; raise ConformanceError saying what is wrong."""
    from benchmark.config import model_options, resolve
    from benchmark.registry import registry
    from benchmark.runner import run_job

    if dataset not in TINY_WORLDS:
        raise BenchmarkError(f"check_method runs on {' or '.join(TINY_WORLDS)}, not {dataset!r}.")
    reg = registry()
    try:
        spec = reg.model(name)
    except BenchmarkError as exc:
        raise ConformanceError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="cvgl-conformance-") as tmp:
        user = {
            "dataset": dataset,
            "dataset_options": TINY_WORLDS[dataset],
            "epochs": 1,
            "batch_size": 8,
            "device": "cpu",
            "workers": 0,
            "results_dir": tmp,
        }
        cfg = resolve(spec, user, quick=True)
        opts = model_options(spec, cfg)
        problems = model_problems(spec.build(opts), opts)
        if problems:
            raise ConformanceError(f"Method {name!r}: " + "; ".join(problems) + ".")
        trained = run_job(reg, cfg)
        if trained.status != "ok":
            raise ConformanceError(f"Method {name!r} failed a tiny run: {trained.error}")
        problems = result_problems(trained)
        checkpoint = trained.training.get("checkpoint")
        if checkpoint:
            weights = Path(checkpoint) / "model.safetensors"
            again = run_job(reg, cfg.model_copy(update={"epochs": 0}), weights=weights)
            # the same weights, inputs and deterministic CPU kernels give the same ranks
            if again.status != "ok" or any(again.metrics[k] != trained.metrics[k] for k in RECALLS):
                problems.append(
                    "its saved checkpoint does not evaluate to the recalls of the run that "
                    f"wrote it ({again.error or again.metrics} vs {trained.metrics}): a state "
                    "the model needs is missing from its state_dict"
                )
        if problems:
            raise ConformanceError(f"Method {name!r}: " + "; ".join(problems) + ".")
    return trained


def model_problems(model: CrossViewModel, opts: ModelOptions) -> list[str]:
    """What the freshly built MODEL gets wrong about the CrossViewModel contract."""
    import torch

    from benchmark.model import CrossViewModel
    from benchmark.specs import Preprocess

    if not isinstance(model, CrossViewModel):
        return [f"build() returned a {type(model).__name__}, not a CrossViewModel"]
    pre = getattr(model, "preprocess", None)
    dim = getattr(model, "descriptor_dim", None)
    if not isinstance(pre, Preprocess):
        return ["model.preprocess is not set to a Preprocess"]
    if not isinstance(dim, int) or dim < 1:
        return [f"model.descriptor_dim is {dim!r}, not a positive int"]
    problems = []
    wanted = (tuple(opts.ground_size), tuple(opts.aerial_size), opts.polar)
    if (tuple(pre.ground_size), tuple(pre.aerial_size), pre.polar) != wanted:
        problems.append(
            f"model.preprocess (sizes {pre.ground_size}, {pre.aerial_size}, polar {pre.polar}) "
            f"differs from its options {wanted}, so --set model.ground_size etc. would be ignored"
        )
    branches = model.branches()
    if set(branches) != {"ground", "aerial"} or not all(
        isinstance(m, torch.nn.Module) for m in branches.values()
    ):
        problems.append("branches() must return {'ground': module, 'aerial': module}")
    rng = torch.Generator().manual_seed(0)
    ground = torch.rand(2, 3, *pre.ground_size, generator=rng)
    aerial = torch.rand(2, 3, *pre.aerial_size, generator=rng)
    model.eval()
    with torch.no_grad():
        out = model(ground, aerial)
        for view, x, embed in (
            ("ground", ground, model.embed_ground),
            ("aerial", aerial, model.embed_aerial),
        ):
            d = out.get(view) if isinstance(out, dict) else None
            if not isinstance(d, torch.Tensor) or tuple(d.shape) != (2, dim):
                problems.append(f"forward() must return {view!r} of shape (B, descriptor_dim)")
                continue
            # float32 unit vectors: the norm's rounding error is ~sqrt(D) * 6e-8 << 1e-3
            if not torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-3):
                problems.append(f"forward()[{view!r}] is not L2-normalised")
            # training uses forward(), evaluation embed_*(): the same eval-mode computation,
            # so only the order of float operations may differ (<< 1e-4 on unit vectors)
            if not torch.allclose(embed(x), d, atol=1e-4):
                problems.append(f"embed_{view}() differs from forward()[{view!r}]")
        if model.predicts_offsets and tuple(model.predict_offsets(ground, aerial).shape) != (2, 2):
            problems.append("predict_offsets() must return (B, 2) offsets")
    return problems


def result_problems(result: RunResult) -> list[str]:
    """What a tiny run's RESULT lacks: recalls in 0..100 and a cost profile."""
    problems = []
    for key in RECALLS:
        value = result.metrics.get(key)
        if not isinstance(value, int | float) or not 0 <= value <= 100:
            problems.append(f"the run's {key} is {value!r}, not a percentage")
    if not result.profile.get("params_m") and result.profile.get("params_m") != 0:
        problems.append("the run has no cost profile")
    return problems
