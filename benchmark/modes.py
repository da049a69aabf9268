"""One planned job, run in its mode: train and evaluate, evaluate given weights, or score
saved descriptors. Whatever goes wrong is recorded in its result, never raised (a second
stop signal aside)."""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
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
from benchmark.jobs import Job, load_dataset, resolve_device
from benchmark.model import CrossViewModel
from benchmark.profiling.measuring import profile_model, timing
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
