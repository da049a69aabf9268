"""Runs (plugin, dataset, split) jobs: build, train, evaluate, profile, record. One failing
plugin never stops the others; its result says what went wrong."""

from __future__ import annotations

import json
import random
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark import checkpoint, distributed, interrupt, results
from benchmark.config import RunConfig
from benchmark.data import images
from benchmark.data.base import DatasetBundle
from benchmark.data.sources import describe_sources
from benchmark.data.transforms import InputPipeline
from benchmark.descriptors import descriptor_meta, save_descriptors
from benchmark.errors import BenchmarkError, user_message
from benchmark.evaluate import EvalReport, evaluate, evaluate_saved, ground_protocol
from benchmark.jobs import (
    Existing,
    Job,
    finished,
    load_dataset,
    lock,
    plan,
    preflight,
    resolve_device,
)
from benchmark.metrics import RECALLS
from benchmark.model import CrossViewModel
from benchmark.profiling import profile_model, timing
from benchmark.registry import Registry
from benchmark.retrieval import save_retrieval
from benchmark.specs import MetricSpec
from benchmark.tracking import RunLog
from benchmark.training.loop import train
from benchmark.weights import checkpoint_follows, load_weights


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; make CPU kernels deterministic when asked."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False


def build_loss(reg: Registry, cfg: RunConfig) -> Callable[..., torch.Tensor]:
    """The configured loss; options it does not accept are a clear error."""
    try:
        return reg.loss(cfg.loss).build(**cfg.loss_options)
    except TypeError as exc:
        raise BenchmarkError(
            f"Loss {cfg.loss!r} does not accept the options {cfg.loss_options} ({exc}). "
            "Check --set loss_options.KEY=VALUE."
        ) from None


def _phase_message(stop: interrupt.Interrupted, phase: str, resume_point: str | None) -> str:
    """What an interrupted record says: where it stopped, the last good state, what next."""
    name = interrupt.signal_name(stop.signum)
    if stop.waited:
        where = (
            f"during {phase}, after waiting {stop.waited:.0f} s for data once the stop was asked "
            "for (a file of the dataset may block: a FIFO, a hung network filesystem)"
        )
    else:
        where = f"during {phase}"
    if resume_point is not None:
        return (
            f"Stopped by {name} {where}. The newest checkpoint is {resume_point}; run the same "
            "command with --resume to continue from it."
        )
    return f"Stopped by {name} {where}; nothing of it was kept. Run the same command again."


def new_result(reg: Registry, job: Job) -> results.RunResult:
    """The (not yet run) result of JOB: its identity, file name, config and method record."""
    cfg, spec = job.cfg, job.spec
    return results.RunResult(
        plugin=cfg.plugin,
        variant=cfg.variant,
        regime=cfg.regime,
        dataset=cfg.dataset,
        split=job.split,
        seed=cfg.seed,
        protocol=cfg.protocol,
        run_id=job.identity.digest,
        identity=job.identity.settings,
        status="failed",
        config=cfg.model_dump(mode="json"),
        started=results.now(),
        git_commit=results.git_commit(),
        card=results.CardSnapshot.of(spec.card),
        plugin_package=results.PluginPackage.of(reg.provenance(cfg.plugin)),
    )


def result_path(reg: Registry, cfg: RunConfig, weights: Path | None = None) -> Path:
    """Where the result of CFG (evaluating WEIGHTS, when given) is written."""
    return plan(reg, cfg, weights).result_path


def run_job(
    reg: Registry,
    cfg: RunConfig,
    resume: bool = False,
    weights: Path | None = None,
    descriptors: Path | None = None,
) -> results.RunResult:
    """Run one plugin end to end and return its ok, failed or interrupted result; raises only
    on a second stop signal (interrupt.Interrupted with at_once).

    With DESCRIPTORS (saved by an earlier run) no model is built: they are scored again.
    """
    try:
        job = plan(reg, cfg, weights, descriptors)
    except BenchmarkError as exc:
        return results.RunResult(
            plugin=cfg.plugin,
            variant=cfg.variant,
            regime=cfg.regime,
            dataset=cfg.dataset,
            split=cfg.split or "default",
            seed=cfg.seed,
            protocol=cfg.protocol,
            status="failed",
            error=user_message(exc),
            config=cfg.model_dump(mode="json"),
            started=results.now(),
            finished=results.now(),
            git_commit=results.git_commit(),
        )
    return execute(reg, job, resume)


@dataclass
class Attempt:
    """A job under way: its result so far, its device, the phase it is in and the checkpoint
    its training left (what an interrupted record names)."""

    job: Job
    result: results.RunResult
    device: torch.device = torch.device("cpu")
    phase: str = "preparation"
    trained: str | None = None


def execute(reg: Registry, job: Job, resume: bool = False) -> results.RunResult:
    """Run the planned JOB in its mode (score saved descriptors, evaluate given weights, or
    train and evaluate) and return its result; see run_job."""
    attempt = Attempt(job, new_result(reg, job))
    images.SKIPPED.clear()
    try:
        _prepare(attempt)
        if job.descriptors is not None:
            score_descriptors(reg, attempt)
        elif job.weights is not None:
            evaluate_weights(reg, attempt, resume)
        else:
            train_and_evaluate(reg, attempt, resume)
    except interrupt.Interrupted as stop:
        if stop.at_once:
            raise
        attempt.result.status = "interrupted"
        latest = checkpoint.latest(job.ckpt_dir) if job.trains else None
        point = attempt.trained or (str(latest.path) if latest is not None else None)
        attempt.result.error = _phase_message(stop, attempt.phase, point)
    except BenchmarkError as exc:
        attempt.result.error = user_message(exc)
    except Exception as exc:  # a broken plugin is recorded, not fatal to the others
        attempt.result.error = f"{type(exc).__name__}: {exc}"
        attempt.result.training["traceback"] = traceback.format_exc()
    return _finish(attempt.result, job.cfg)


def train_and_evaluate(reg: Registry, attempt: Attempt, resume: bool = False) -> None:
    """Build the method's model (pretrained weights or from scratch), train it when the run
    has epochs (continuing its checkpoints with RESUME), then evaluate and profile it."""
    job, result = attempt.job, attempt.result

    def build() -> CrossViewModel:
        model = job.spec.build(job.options)
        result.initialisation = model.initialisation
        return model

    model, bundle = _load(reg, attempt, build)
    _run_model(reg, attempt, model, bundle, resume)


def evaluate_weights(reg: Registry, attempt: Attempt, resume: bool = False) -> None:
    """Build the method's model with the given weights in place of any pretrained ones, and
    evaluate and profile it (after training it further when the run has epochs)."""
    job, result = attempt.job, attempt.result

    def build() -> CrossViewModel:
        with checkpoint_follows():  # weights that replace every tensor: no pretrained load
            model = job.spec.build(job.options)
        result.initialisation = model.initialisation
        result.initialisation = load_weights(model, job.weights)
        result.training["weights"] = str(job.weights)
        result.parent = results.producer_of(job.weights, job.cfg.results_dir)
        return model

    model, bundle = _load(reg, attempt, build)
    _run_model(reg, attempt, model, bundle, resume)


def score_descriptors(reg: Registry, attempt: Attempt) -> None:
    """Score the descriptors an earlier run saved on this run's test split: no model is
    built, trained or profiled."""
    job, result, cfg = attempt.job, attempt.result, attempt.job.cfg
    if cfg.epochs > 0:
        raise BenchmarkError(
            "Saved descriptors are scored without training; use `eval --descriptors PATH`."
        )
    _, bundle = _load(reg, attempt, lambda: None)
    build_loss(reg, cfg)  # its options are checked as in every mode
    metrics = _metrics(reg, cfg)
    attempt.phase = "evaluation"
    with interrupt.abortable():
        ev, saved_meta = evaluate_saved(job.descriptors, bundle.test, cfg, attempt.device, metrics)
        result.preprocessing = saved_meta.get("preprocessing", {})
        result.training["descriptors_from"] = str(job.descriptors)
    _record(result, cfg, metrics, ev)
    result.status = "ok"


def _prepare(attempt: Attempt) -> None:
    """Choose the device, seed every generator and record the environment and options."""
    cfg, result = attempt.job.cfg, attempt.result
    attempt.device = device = resolve_device(cfg.device)
    result.env = results.environment(str(device))
    result.env["deterministic"] = cfg.deterministic
    seed_everything(cfg.seed, cfg.deterministic and device.type == "cpu")
    result.env["seeds"] = {k: cfg.seed for k in ("python", "numpy", "torch", "shuffle")}
    result.env["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    result.env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    result.model_options = attempt.job.options.model_dump(mode="json")


def _load(
    reg: Registry, attempt: Attempt, build: Callable[[], CrossViewModel | None]
) -> tuple[CrossViewModel | None, DatasetBundle]:
    """BUILD's model and the dataset (a blocked read stops on a signal); the dataset and
    the process layout are recorded."""
    cfg, result = attempt.job.cfg, attempt.result
    world = distributed.current()
    with interrupt.abortable(interrupt.WAIT_S):
        model = build()
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
    return model, bundle


def _metrics(reg: Registry, cfg: RunConfig) -> list[MetricSpec]:
    """The metrics CFG names, every installed one when it names none."""
    if cfg.metrics:
        return [reg.metric(name) for name in cfg.metrics]
    return list(reg.metrics.values())


def _run_model(
    reg: Registry,
    attempt: Attempt,
    model: CrossViewModel,
    bundle: DatasetBundle,
    resume: bool,
) -> None:
    """Train MODEL when the run has epochs, then evaluate it on the test split (also the last
    epoch's model, when validation chose another one) and profile it."""
    job, result, cfg, device = attempt.job, attempt.result, attempt.job.cfg, attempt.device
    pipeline = InputPipeline(model.preprocess, bundle.geometry)
    result.preprocessing = pipeline.describe()
    result.preprocessing["sources"] = describe_sources(bundle.test, pipeline)
    result.preprocessing["protocol"] = ground_protocol(cfg, pipeline).describe()
    loss_fn = build_loss(reg, cfg)
    if job.trains and not any(p.requires_grad for p in model.parameters()):
        result.training["skipped"] = "the model has no trainable parameters"
    elif job.trains:
        attempt.phase = "training"
        if not _train(reg, attempt, model, bundle, pipeline, loss_fn, resume):
            return  # stopped by a signal: the result says where and how to continue
    metrics = _metrics(reg, cfg)
    attempt.phase = "evaluation"
    with interrupt.abortable():
        selected = result.training.get("selected_weights")
        if selected and result.training["selected_epoch"] != result.training["epochs_completed"]:
            final = evaluate(model, bundle.test, pipeline, cfg, device, metrics)  # last epoch
            if final is not None:  # scalars: the curves stay with the selected model's
                result.training["final_metrics"] = {
                    k: v for k, v in final.metrics.items() if not isinstance(v, dict | list)
                }
            distributed.barrier(distributed.current())  # rank 0 wrote the selected weights
            load_weights(model, selected)
        ev = evaluate(model, bundle.test, pipeline, cfg, device, metrics)
    if ev is None:  # torchrun: rank 0 scores and records this job
        result.status = "ok"
        return
    _record(result, cfg, metrics, ev)
    if cfg.profile:
        attempt.phase = "profiling"
        with interrupt.abortable():
            result.profile = profile_model(model, device, **timing(device))
    result.status = "ok"


def _train(
    reg: Registry,
    attempt: Attempt,
    model: CrossViewModel,
    bundle: DatasetBundle,
    pipeline: InputPipeline,
    loss_fn: Callable[..., torch.Tensor],
    resume: bool,
) -> bool:
    """Train MODEL and record how; False when a signal stopped it (the result is marked
    interrupted, naming the checkpoint to resume from)."""
    job, result, cfg = attempt.job, attempt.result, attempt.job.cfg
    if distributed.current().is_main:
        checkpoint.write_identity(job.ckpt_dir, job.training.settings)
    tracker = RunLog(job.result_path.with_suffix(""), tuple(cfg.log))

    def epoch_end(epoch: int, logs: dict[str, float]) -> None:
        tracker(epoch, logs)
        reg.hook.benchmark_on_epoch_end(
            method=cfg.plugin, plugin=cfg.plugin, epoch=epoch, logs=logs
        )

    report = train(
        model,
        bundle.train,
        pipeline,
        cfg,
        loss_fn,
        attempt.device,
        job.ckpt_dir,
        resume=resume,
        on_epoch_end=lambda e, logs: epoch_end(e, logs),
    )
    tracker.close()
    result.train_seconds = report.seconds
    latest = checkpoint.latest(job.ckpt_dir)
    result.training = {
        "epochs_completed": report.epochs_completed,
        "history": report.history,
        "resumed_from": report.resumed_from,
        "resumed_step": report.resumed_step,
        "checkpoint": str(latest.path) if latest is not None else None,
        "precision": report.precision,
        "augmentation": report.augmentation,
        "validation": report.validation,
        "selection": cfg.selection,
        "selected_epoch": report.selected_epoch,
        "selected_weights": (str(report.selected_weights) if report.selected_weights else None),
        "workers": report.workers,
        "data_wait_seconds": report.data_wait_seconds,
        "compute_seconds": report.compute_seconds,
    }
    if report.interrupted:
        result.status = "interrupted"
        result.error = (
            f"Stopped by {report.interrupted} after {report.epochs_completed} of "
            f"{cfg.epochs} epochs"
            + (f" and {latest.step} steps" if latest is not None and latest.step else "")
            + (f"; the checkpoint {latest.path} is kept" if latest is not None else "")
            + ". Run the same command with --resume to continue."
        )
        return False
    attempt.trained = result.training["checkpoint"]
    return True


def _record(
    result: results.RunResult, cfg: RunConfig, metrics: list[MetricSpec], ev: EvalReport
) -> None:
    """Put EV's metrics, their display and timing in RESULT and write its companion files."""
    result.metrics = ev.metrics
    result.display = results.displays(metrics, ev.metrics)
    result.eval_seconds = ev.seconds
    result.training["retrieval_backend"] = ev.backend
    result.files = save_companions(result, cfg, ev)


def _finish(result: results.RunResult, cfg: RunConfig) -> results.RunResult:
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
        extras = ev.evaluation.extras  # predicted offsets, kept so metrics can be recomputed
        found = save_retrieval(
            f"{stem}.retrieval.npz", ev.retrieval, ev.evaluation.split.positives, extras
        )
        files = {"retrieval": found.name}
        if cfg.save_descriptors and ev.descriptors is not None:
            meta = descriptor_meta(result.config, result.preprocessing)
            refined = (ev.retrieval.topk[:, 0], extras["offset"]) if "offset" in extras else None
            path = save_descriptors(
                f"{stem}.descriptors.safetensors", *ev.descriptors, meta, refined
            )
            files["descriptors"] = path.name
    except OSError as exc:
        raise BenchmarkError(
            f"Could not write retrieval files to {str(cfg.results_dir)!r} ({exc.strerror}). "
            "Choose a writable --results-dir with free space."
        ) from exc
    return files


@dataclass(frozen=True)
class Written:
    """A result file a command wrote, or kept (--skip-existing), with its record."""

    path: Path
    result: results.RunResult
    skipped: bool = False


def results_json(written: Sequence[Written]) -> str:
    """What ``run --format json`` prints: per run its result file, whether it was skipped
    and its record (the file's content)."""
    return json.dumps(
        [
            {"path": str(w.path), "skipped": w.skipped, "result": w.result.model_dump(mode="json")}
            for w in written
        ],
        indent=2,
    )


def run_all(
    reg: Registry,
    configs: list[RunConfig],
    resume: bool = False,
    weights: Path | None = None,
    debug: bool = False,
    descriptors: Path | None = None,
    existing: Existing = "refuse",
    written: list[Written] | None = None,
) -> int:
    """Run every config, write each result, print a summary. Exit code: 0 every run ok; 1
    some run failed; 128 + N when signal N kept a run from completing (see interrupt.py).
    EXISTING says what to do with a run whose ok result exists (see jobs.finished); each
    result written or kept is appended to WRITTEN."""
    written = [] if written is None else written
    jobs = [plan(reg, cfg, weights, descriptors) for cfg in configs]
    kept = {job.identity.stem for job in finished(jobs, existing, resume)}
    todo = [job for job in jobs if job.identity.stem not in kept]
    for note in preflight(reg, todo, resume):
        print(note, file=sys.stderr, flush=True)
    world = distributed.init(configs[0].device)
    held = lock(todo) if world.is_main else []
    try:
        for job in jobs:
            if job.identity.stem in kept and world.is_main:
                kept_result = results.load(job.result_path)
                print(f"== {_title(job.cfg)}: its ok result exists, skipped", flush=True)
                print(summary_line(kept_result), flush=True)
                print(f"   result: {job.result_path}", flush=True)
                written.append(Written(job.result_path, kept_result, True))
        with interrupt.stop_on_signals():
            return _run_each(reg, todo, resume, debug, world, written)
    finally:
        for run_lock in held:
            run_lock.release()
        distributed.shutdown()


def import_failures(reg: Registry, names: list[str]) -> dict[str, str]:
    """The requested methods (every one for ['all']) whose plugin package failed to load."""
    return reg.failures(names)


def record_import_failures(
    reg: Registry,
    failures: dict[str, str],
    configs: list[RunConfig],
    written: list[Written] | None = None,
) -> int:
    """Write a failed result for each method whose package failed to load (appended to
    WRITTEN); 1 if there was one."""
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
            error=error,
            plugin_package=results.PluginPackage.of(reg.provenance(name)),
            started=results.now(),
            finished=results.now(),
            git_commit=results.git_commit(),
        )
        path = results.write(result, like.results_dir)
        if written is not None:
            written.append(Written(path, result))
        print(summary_line(result), file=sys.stderr, flush=True)
        print(f"   result: {path}", flush=True)
    return 1 if failures else 0


def write_result(result: results.RunResult, results_dir: Path) -> Path:
    """Write RESULT; on a full disk, free the space this run's companion files took and try
    once more, so the record itself is never lost to a leftover of our own."""
    try:
        return results.write(result, results_dir)
    except OSError as first:
        for name in result.files.values():
            (Path(results_dir) / name).unlink(missing_ok=True)
        if result.files:
            result.notes.append(
                f"The companion files {', '.join(result.files.values())} were removed to make "
                f"room for this record ({first.strerror})."
            )
            result.files = {}
        try:
            return results.write(result, results_dir)
        except OSError as exc:
            raise BenchmarkError(
                f"Could not write the result {result.filename()} to {str(results_dir)!r} "
                f"({exc.strerror}); it was {result.status}"
                + (f": {result.error}" if result.error else "")
                + ". Choose a writable --results-dir with free space."
            ) from exc


def _title(cfg: RunConfig) -> str:
    return f"{cfg.plugin} [{cfg.variant}, {cfg.regime} regime] on {cfg.dataset}"


def _run_each(
    reg: Registry,
    jobs: list[Job],
    resume: bool,
    debug: bool,
    world: distributed.World,
    written: list[Written],
) -> int:
    failed = stopped = 0
    for index, job in enumerate(jobs):
        cfg = job.cfg
        if world.is_main:
            print(f"== {_title(cfg)}", flush=True)
        result = execute(reg, job, resume=resume)
        if not world.is_main:
            if result.status == "failed":
                raise BenchmarkError(f"Rank {world.rank} failed on {cfg.plugin}: {result.error}")
            if (signum := interrupt.requested()) is not None:
                return interrupt.exit_code(signum)
            continue
        path = write_result(result, cfg.results_dir)
        written.append(Written(path, result))
        reg.hook.benchmark_on_result(result=result, path=path)
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
        if path != job.result_path:
            print(f"   (the ok result {job.result_path.name} of this run is kept)", flush=True)
        if result.status == "failed" and world.active:
            print(
                "Under torchrun a failed run ends the launch: the other processes cannot go on "
                "without this one.",
                file=sys.stderr,
            )
            return 1
        stopped += result.status == "interrupted"
        if (signum := interrupt.requested()) is not None:
            left = [j.cfg.plugin for j in jobs[index + 1 :]]
            if left:
                print(
                    f"Stopped by {interrupt.signal_name(signum)}: {len(left)} later run(s) did "
                    f"not start; run them with --plugins {','.join(left)}.",
                    file=sys.stderr,
                )
            elif not stopped:
                print(
                    f"{interrupt.signal_name(signum)} arrived after the last run had finished; "
                    "its result is complete.",
                    file=sys.stderr,
                )
            if left or stopped:
                return interrupt.exit_code(signum)
            break
    if failed:
        print(f"{failed} of {len(jobs)} runs failed; see the result files.", file=sys.stderr)
    return 1 if failed else 0


def summary_line(result: results.RunResult) -> str:
    """One human line: recall, the other metrics the leaderboard shows as columns (a
    method's own included), cost and time, or the error."""
    if result.status != "ok":
        return f"   {result.status.upper()}: {result.error}"
    m, p = result.metrics, result.profile
    parts = [f"{k} {m[k]:.2f}" for k in RECALLS if k in m]
    parts += [
        f"{d.header} {m[d.key]:.{d.digits}f}"
        for d in result.display
        if d.column and d.key not in RECALLS and isinstance(m.get(d.key), int | float)
    ]
    if p:
        parts += [
            f"params {p.get('params_m', 0):.2f} M",
            f"{p.get('gmacs', 0):.2f} GMACs",
            f"latency {p.get('latency_ms', 0):.1f} ms",
        ]
    parts += [f"train {result.train_seconds:.0f} s", f"eval {result.eval_seconds:.0f} s"]
    return "   " + " | ".join(parts)
