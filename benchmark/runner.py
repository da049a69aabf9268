"""Runs (plugin, dataset, split) jobs: build, train, evaluate, profile, record. One failing
plugin never stops the others; its result says what went wrong."""

from __future__ import annotations

import os
import random
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from benchmark import checkpoint, distributed, interrupt, results
from benchmark.config import RunConfig, model_options, options_tag, validation_message
from benchmark.data import images
from benchmark.data.base import DatasetBundle
from benchmark.data.transforms import InputPipeline
from benchmark.descriptors import descriptor_meta, save_descriptors
from benchmark.errors import BenchmarkError, user_message
from benchmark.evaluate import EvalReport, evaluate, evaluate_saved, ground_protocol
from benchmark.model import CrossViewModel
from benchmark.profiling import profile_model
from benchmark.registry import Registry
from benchmark.retrieval import save_retrieval
from benchmark.specs import DatasetSpec
from benchmark.train import train
from benchmark.weights import load_into, read_state_dict


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; an explicit CUDA device must exist. Under
    torchrun each rank takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(
            f"Device {name!r} was requested but CUDA is not available here. Use --device cpu "
            "or --device auto."
        )
    world = distributed.current()
    if device.type == "cuda" and world.active:
        if device.index is not None:
            raise BenchmarkError(
                f"Under torchrun each process uses the GPU of its LOCAL_RANK, so --device "
                f"{name} cannot be honoured; use --device cuda (or auto) and choose GPUs with "
                "CUDA_VISIBLE_DEVICES."
            )
        device = torch.device("cuda", world.local_rank)
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; make CPU kernels deterministic when asked."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def dataset_split(spec: DatasetSpec, cfg: RunConfig) -> str:
    """The configured split of SPEC (its default when none is given), checked to exist."""
    split = cfg.split or spec.default_split
    if split not in spec.splits:
        raise BenchmarkError(
            f"Dataset {cfg.dataset!r} has no split {split!r}. Its splits: {', '.join(spec.splits)}."
        )
    return split


def load_dataset(reg: Registry, cfg: RunConfig) -> DatasetBundle:
    """Build the configured dataset bundle (split checked, --limit applied)."""
    spec = reg.dataset(cfg.dataset)
    split = dataset_split(spec, cfg)
    if spec.needs_root and cfg.data_root is None:
        raise BenchmarkError(
            f"Dataset {cfg.dataset!r} needs --data-root pointing at the folder you received "
            f"(see `python -m benchmark datasets check --dataset {cfg.dataset} --data-root PATH`)."
        )
    try:
        bundle = spec.build(cfg.data_root, split, cfg.dataset_options)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc, "dataset_options.")) from None
    if cfg.limit is not None:
        bundle.train = bundle.train.subset(cfg.limit)
        bundle.test = bundle.test.subset(cfg.limit)
    if bundle.train.num_ground < 2 and cfg.epochs > 0:
        raise BenchmarkError(f"The training split of {cfg.dataset!r} has fewer than 2 pairs.")
    if bundle.test.num_ground == 0:
        raise BenchmarkError(f"The test split {split!r} of {cfg.dataset!r} is empty.")
    return bundle


def job_paths(result: results.RunResult) -> Path:
    """Checkpoint directory of this job (named as its aligned result)."""
    return (
        Path(result.config["results_dir"])
        / "checkpoints"
        / result.model_copy(update={"protocol": "aligned"}).stem()
    )


def build_loss(reg: Registry, cfg: RunConfig) -> Callable[..., torch.Tensor]:
    """The configured loss; options it does not accept are a clear error."""
    try:
        return reg.loss(cfg.loss).build(**cfg.loss_options)
    except TypeError as exc:
        raise BenchmarkError(
            f"Loss {cfg.loss!r} does not accept the options {cfg.loss_options} ({exc}). "
            "Check --set loss_options.KEY=VALUE."
        ) from None


def run_job(
    reg: Registry,
    cfg: RunConfig,
    resume: bool = False,
    weights: Path | None = None,
    descriptors: Path | None = None,
) -> results.RunResult:
    """Run one plugin end to end and return its (ok or failed) result; never raises.

    With DESCRIPTORS (saved by an earlier run) no model is built: they are scored again.
    """
    spec = reg.model(cfg.plugin)
    split = cfg.split or (
        reg.datasets[cfg.dataset].default_split if cfg.dataset in reg.datasets else "?"
    )
    result = results.RunResult(
        plugin=cfg.plugin,
        variant=cfg.variant,
        regime=cfg.regime,
        dataset=cfg.dataset,
        split=split,
        seed=cfg.seed,
        protocol=cfg.protocol,
        options_tag=options_tag(spec, cfg),
        status="failed",
        config=cfg.model_dump(mode="json"),
        started=results.now(),
        git_commit=results.git_commit(),
    )
    images.SKIPPED.clear()
    try:
        device = resolve_device(cfg.device)
        result.env = results.environment(str(device))
        result.env["deterministic"] = cfg.deterministic
        seed_everything(cfg.seed, cfg.deterministic and device.type == "cpu")
        result.env["seeds"] = {k: cfg.seed for k in ("python", "numpy", "torch", "shuffle")}
        result.env["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
        result.env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        opts = model_options(spec, cfg)
        result.model_options = opts.model_dump(mode="json")
        if descriptors is not None and cfg.epochs > 0:
            raise BenchmarkError(
                "Saved descriptors are scored without training; use `eval --descriptors PATH`."
            )
        model: CrossViewModel | None = None if descriptors is not None else spec.build(opts)
        if weights is not None and model is not None:
            load_into(model, read_state_dict(weights), str(weights))
            result.training["weights"] = str(weights)
        world = distributed.current()
        with distributed.main_first(world):  # rank 0 generates and caches a synthetic world
            bundle = load_dataset(reg, cfg)
        if world.active:
            result.env["distributed"] = world.describe(min(cfg.batch_size, bundle.train.num_ground))
        result.dataset_info = {
            "train_pairs": bundle.train.num_ground,
            "test_queries": bundle.test.num_ground,
            "test_references": bundle.test.num_aerial,
            **bundle.info,
        }
        if model is not None:
            pipeline = InputPipeline(model.preprocess, bundle.geometry)
            result.preprocessing = pipeline.describe()
            result.preprocessing["protocol"] = ground_protocol(cfg, pipeline).describe()
        loss_fn = build_loss(reg, cfg)
        if cfg.epochs > 0 and not any(p.requires_grad for p in model.parameters()):
            result.training["skipped"] = "the model has no trainable parameters"
        elif cfg.epochs > 0:
            report = train(
                model,
                bundle.train,
                pipeline,
                cfg,
                loss_fn,
                device,
                job_paths(result),
                resume=resume,
                on_epoch_end=lambda e, logs: reg.pm.hook.benchmark_on_epoch_end(
                    plugin=cfg.plugin, epoch=e, logs=logs
                ),
            )
            result.train_seconds = report.seconds
            latest = checkpoint.latest(job_paths(result))
            result.training = {
                "epochs_completed": report.epochs_completed,
                "history": report.history,
                "resumed_from": report.resumed_from,
                "resumed_step": report.resumed_step,
                "checkpoint": str(latest.path) if latest is not None else None,
            }
            if report.interrupted:
                result.status = "interrupted"
                result.error = (
                    f"Stopped by {report.interrupted} after {report.epochs_completed} of "
                    f"{cfg.epochs} epochs"
                    + (f" and {latest.step} steps" if latest is not None and latest.step else "")
                    + "; the checkpoint is kept. Run the same command with --resume to continue."
                )
                record_skipped(result, cfg)
                result.finished = results.now()
                return result
        metrics = list(reg.metrics.values())
        if cfg.metrics:
            metrics = [reg.metric(name) for name in cfg.metrics]
        if model is not None:
            ev = evaluate(model, bundle.test, pipeline, cfg, device, metrics)
            if ev is None:  # torchrun: rank 0 scores and records this job
                result.status = "ok"
                return result
        else:
            ev, saved_meta = evaluate_saved(descriptors, bundle.test, cfg, device, metrics)
            result.preprocessing = saved_meta.get("preprocessing", {})
            result.training["descriptors_from"] = str(descriptors)
        result.metrics = ev.metrics
        result.eval_seconds = ev.seconds
        result.training["retrieval_backend"] = ev.backend
        result.files = save_companions(result, cfg, ev)
        if cfg.profile and model is not None:
            result.profile = profile_model(model, device)
        result.status = "ok"
    except BenchmarkError as exc:
        result.error = user_message(exc)
    except Exception as exc:  # a broken plugin is recorded, not fatal to the others
        result.error = f"{type(exc).__name__}: {exc}"
        result.training["traceback"] = traceback.format_exc()
    record_skipped(result, cfg)
    result.finished = results.now()
    return result


def record_skipped(result: results.RunResult, cfg: RunConfig) -> None:
    """Note in RESULT how many unreadable images --skip-bad-images read as black ones."""
    if images.SKIPPED:
        result.dataset_info["skipped_bad_images"] = {
            "count": len(images.SKIPPED),
            "examples": sorted(images.SKIPPED)[:3],
            **({"note": "counted in the main process only (workers > 0)"} if cfg.workers else {}),
        }


def save_companions(result: results.RunResult, cfg: RunConfig, ev: EvalReport) -> dict[str, str]:
    """Write per-query ranks and top-k (always) and the descriptors (when asked) beside the
    result file; return their file names."""
    stem = Path(cfg.results_dir) / result.stem()
    try:
        found = save_retrieval(f"{stem}.retrieval.npz", ev.retrieval, ev.evaluation.split.positives)
        files = {"retrieval": found.name}
        if cfg.save_descriptors and ev.descriptors is not None:
            meta = descriptor_meta(result.config, result.preprocessing)
            path = save_descriptors(f"{stem}.descriptors.safetensors", *ev.descriptors, meta)
            files["descriptors"] = path.name
    except OSError as exc:
        raise BenchmarkError(
            f"Could not write retrieval files to {str(cfg.results_dir)!r} ({exc.strerror}). "
            "Choose a writable --results-dir with free space."
        ) from exc
    return files


def run_all(
    reg: Registry,
    configs: list[RunConfig],
    resume: bool = False,
    weights: Path | None = None,
    debug: bool = False,
    descriptors: Path | None = None,
) -> int:
    """Run every config, write each result, print a summary; exit code 1 if any failed.

    SIGINT/SIGTERM stop cleanly (see benchmark/interrupt.py): exit code 130/143.
    """
    preflight(reg, configs)
    world = distributed.init(configs[0].device)
    try:
        with interrupt.stop_on_signals():
            return _run_each(reg, configs, resume, weights, debug, descriptors, world)
    finally:
        distributed.shutdown()


def import_failures(reg: Registry, names: list[str]) -> dict[str, str]:
    """The requested plugins (every one for ['all']) that are installed but failed to import."""
    wanted = set(reg.load_errors) if names == ["all"] else set(names)
    return {n: e for n, e in sorted(reg.load_errors.items()) if n in wanted and n not in reg.models}


def record_import_failures(failures: dict[str, str], configs: list[RunConfig]) -> int:
    """Write a failed result for each plugin that could not be imported; 1 if there was one."""
    for name, error in failures.items():
        like = configs[0]
        result = results.RunResult(
            plugin=name,
            variant=like.variant,
            regime=like.regime,
            dataset=like.dataset,
            split=like.split or "default",
            seed=like.seed,
            status="failed",
            error=f"Plugin {name!r} failed to import ({error}). Fix or reinstall its package.",
            started=results.now(),
            finished=results.now(),
            git_commit=results.git_commit(),
        )
        path = results.write(result, like.results_dir)
        print(summary_line(result), file=sys.stderr, flush=True)
        print(f"   result: {path}", flush=True)
    return 1 if failures else 0


def preflight(reg: Registry, configs: list[RunConfig]) -> None:
    """Check what every job needs before any work starts: names, split, the files of a real
    dataset or the options of a generated one, the results folder."""
    datasets: set[str] = set()
    for cfg in configs:
        reg.loss(cfg.loss)
        for name in cfg.metrics or ():
            reg.metric(name)
        spec = reg.dataset(cfg.dataset)
        dataset_split(spec, cfg)
        key = repr((cfg.dataset, cfg.data_root, cfg.split, cfg.dataset_options, cfg.limit))
        if spec.needs_root and key not in datasets:  # the user's files: read their listing now
            datasets.add(key)
            load_dataset(reg, cfg)
        elif spec.check is not None:  # a generated one: its options, and that they fit
            try:
                spec.check(dataset_split(spec, cfg), cfg.dataset_options)
            except ValidationError as exc:
                raise BenchmarkError(validation_message(exc, "dataset_options.")) from None
    for folder in {Path(cfg.results_dir) for cfg in configs}:
        check_writable(folder)


def check_writable(folder: Path) -> None:
    """Create FOLDER if needed and prove a file can be written there, or raise clearly."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchmarkError(
            f"The results directory {str(folder)!r} is not writable ({exc.strerror or exc}). "
            "Choose a writable --results-dir with free space."
        ) from None


def _run_each(
    reg: Registry,
    configs: list[RunConfig],
    resume: bool,
    weights: Path | None,
    debug: bool,
    descriptors: Path | None,
    world: distributed.World,
) -> int:
    failed = 0
    for cfg in configs:
        if world.is_main:
            print(
                f"== {cfg.plugin} [{cfg.variant}, {cfg.regime} regime] on {cfg.dataset}", flush=True
            )
        result = run_job(reg, cfg, resume=resume, weights=weights, descriptors=descriptors)
        if not world.is_main:
            if result.status == "failed":
                raise BenchmarkError(f"Rank {world.rank} failed on {cfg.plugin}: {result.error}")
            if (signum := interrupt.requested()) is not None:
                return interrupt.exit_code(signum)
            continue
        try:
            path = results.write(result, cfg.results_dir)
        except OSError as exc:
            raise BenchmarkError(
                f"Could not write the result to {str(cfg.results_dir)!r} ({exc.strerror}). "
                "Choose a writable --results-dir with free space."
            ) from exc
        reg.pm.hook.benchmark_on_result(result=result, path=path)
        print(
            summary_line(result),
            file=sys.stdout if result.status == "ok" else sys.stderr,
            flush=True,
        )
        if result.status == "failed":
            failed += 1
            if debug and "traceback" in result.training:
                print(result.training["traceback"], file=sys.stderr)
        print(f"   result: {path}", flush=True)
        if result.status == "failed" and world.active:
            print(
                "Under torchrun a failed run ends the launch: the other processes cannot go on "
                "without this one.",
                file=sys.stderr,
            )
            return 1
        if (signum := interrupt.requested()) is not None:
            left = len(configs) - configs.index(cfg) - 1
            skipped = f" {left} later run(s) did not start." if left else ""
            print(
                f"Stopped by {interrupt.signal_name(signum)}.{skipped} Run the same command "
                "with --resume to continue.",
                file=sys.stderr,
            )
            return interrupt.exit_code(signum)
    if failed:
        print(f"{failed} of {len(configs)} runs failed; see the result files.", file=sys.stderr)
    return 1 if failed else 0


def summary_line(result: results.RunResult) -> str:
    """One human line: recall, cost and time, or the error."""
    if result.status != "ok":
        return f"   {result.status.upper()}: {result.error}"
    m, p = result.metrics, result.profile
    parts = [f"{k} {m[k]:.2f}" for k in ("R@1", "R@5", "R@10", "R@1%") if k in m]
    if p:
        parts += [
            f"params {p.get('params_m', 0):.2f} M",
            f"{p.get('gmacs', 0):.2f} GMACs",
            f"latency {p.get('latency_ms', 0):.1f} ms",
        ]
    parts += [f"train {result.train_seconds:.0f} s", f"eval {result.eval_seconds:.0f} s"]
    return "   " + " | ".join(parts)
