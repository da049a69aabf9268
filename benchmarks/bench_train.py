"""Training and extraction throughput: the harness against a bare PyTorch loop.

    .venv/bin/python benchmarks/bench_train.py [--plugin safa] [--epochs 2] [--n-train 512]

Both sides run in one process on the same model, the same synthetic-world pairs, the same
DataLoader batches (the harness's PairDataset/ViewDataset through the model's input
pipeline, the quick regime's batch of 32 and shuffling alike), the same optimizer and
learning-rate schedule (so both follow the same weights) and the same loss. The default
512 pairs make 16 steps per epoch (the quick regime's real epochs have 62), so the
harness's fixed cost per epoch (a checkpoint, ~30 ms for the tiny SAFA) weighs about as
much as in use rather than dominating 4-step epochs:

  training    benchmark.training.loop.train (schedule, checkpoint every epoch, progress bar)
              vs forward, loss, zero_grad, backward, step, schedule step
  extraction  benchmark.evaluate.extract vs a loop of embed calls under inference_mode

Every timed run starts from the same initial weights and seed (training changes the
weights, and with them the speed of CPU kernels, e.g. through denormal floats). They
alternate (bare, harness, bare, harness) and the fastest of each side is kept, so drift in
machine load touches both. Prints pairs/s and harness / bare; the goal is >= 0.95.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.config import model_options, resolve  # noqa: E402
from benchmark.data.loader import EpochShuffle, PairDataset, ViewDataset, batched  # noqa: E402
from benchmark.data.transforms import InputPipeline  # noqa: E402
from benchmark.evaluate import extract  # noqa: E402
from benchmark.jobs import load_dataset  # noqa: E402
from benchmark.registry import registry  # noqa: E402
from benchmark.training.loop import train  # noqa: E402
from benchmark.training.optim import build_optimizer, build_schedule  # noqa: E402

GOAL = 0.95


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of REPEATS timed calls of FN."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    """Print throughput of both sides and their ratios; exit 1 when a ratio misses the goal."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", default="safa")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    reg = registry()
    spec = reg.model(args.plugin)
    world = {"n_train": args.n_train, "n_test": 128, "map_px": 1024, "aerial_px": 64}
    with tempfile.TemporaryDirectory() as tmp:
        user = {
            "dataset_options": world,
            "epochs": args.epochs,
            "device": "cpu",
            "results_dir": tmp,
            "selection": "last",  # no validation split: the bare loop has none either
        }
        cfg = resolve(spec, user, quick=True)
        model = spec.build(model_options(spec, cfg))
        bundle = load_dataset(reg, cfg)
        pipeline = InputPipeline(model.preprocess, bundle.geometry)
        loss_fn = reg.loss(cfg.loss).build(**cfg.loss_options)
        device = torch.device("cpu")
        pairs = PairDataset(bundle.train, pipeline)
        batch = min(cfg.batch_size, len(pairs))

        initial = copy.deepcopy(model.state_dict())

        def fresh() -> None:  # each timed run starts from the same weights and seed
            model.load_state_dict(initial)
            torch.manual_seed(0)

        def bare_train() -> None:
            fresh()
            sampler = EpochShuffle(len(pairs), cfg.seed)
            loader = DataLoader(
                pairs, batch_size=batch, sampler=sampler, drop_last=True, collate_fn=batched
            )
            opt = build_optimizer(cfg, model)
            schedule = build_schedule(cfg, opt, len(loader))
            model.train()
            for epoch in range(cfg.epochs):
                sampler.set_epoch(epoch)
                for batch_data in loader:
                    data = pairs.to_model(batch_data, device)
                    loss = loss_fn(model(data["ground"], data["aerial"]), data)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    schedule.step()

        def harness_train() -> None:
            fresh()
            train(model, bundle.train, pipeline, cfg, loss_fn, device, Path(tmp) / "ckpt")

        views = ViewDataset(bundle.test, "ground", pipeline)

        def bare_extract() -> None:
            model.eval()
            with torch.inference_mode():
                for x in DataLoader(views, batch_size=cfg.eval_batch_size, collate_fn=batched):
                    model.embed_ground(views.to_model(x, device))

        def harness_extract() -> None:
            extract(model, bundle.test, "ground", pipeline, cfg.eval_batch_size, 0, device)

        steps = cfg.epochs * (len(pairs) // batch) * batch
        rows = []
        for name, bare, harness, count in (
            ("training", bare_train, harness_train, steps),
            ("extraction", bare_extract, harness_extract, len(views)),
        ):
            bare_s = harness_s = float("inf")
            for _ in range(args.repeats):
                bare_s = min(bare_s, best_seconds(bare, 1))
                harness_s = min(harness_s, best_seconds(harness, 1))
            rows.append((name, count / bare_s, count / harness_s))
    print(f"{args.plugin} [{cfg.variant}, quick regime], CPU, {torch.get_num_threads()} threads")
    ok = True
    for name, bare_rate, harness_rate in rows:
        ratio = harness_rate / bare_rate
        ok &= ratio >= GOAL
        print(
            f"  {name:10s} bare {bare_rate:8.1f} /s  harness {harness_rate:8.1f} /s  "
            f"harness / bare {ratio:.3f} (goal >= {GOAL})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
