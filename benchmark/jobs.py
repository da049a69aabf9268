"""Runs planned before any work: each one's identity and files, and the checks that find a
mistake while nothing has been done yet (the CLI then exits 2 and writes nothing)."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import ValidationError
from tabulate import tabulate

from benchmark import checkpoint, distributed, results, weights
from benchmark.config import Resolved, RunConfig, model_options, validation_message
from benchmark.data.base import VALIDATION, DatasetBundle, carve_validation
from benchmark.errors import BenchmarkError
from benchmark.identity import RunIdentity, differences, file_digest, run_identity
from benchmark.identity import training_identity as training_of
from benchmark.io import RunLock
from benchmark.registry import Registry
from benchmark.specs import DatasetSpec, ModelOptions, ModelSpec
from benchmark.tracking import check_trackers


@dataclass(frozen=True)
class Job:
    """One run: its config, model options, test split, identities and input files."""

    cfg: RunConfig
    spec: ModelSpec
    options: ModelOptions
    split: str
    identity: RunIdentity
    training: RunIdentity
    weights: Path | None = None
    descriptors: Path | None = None

    @property
    def result_path(self) -> Path:
        """Where its result is written."""
        return Path(self.cfg.results_dir) / f"{self.identity.stem}.json"

    @property
    def ckpt_dir(self) -> Path:
        """Its checkpoints: one folder per training identity, shared by every protocol."""
        return Path(self.cfg.results_dir) / "checkpoints" / self.training.stem

    @property
    def trains(self) -> bool:
        """Whether it trains (and so writes checkpoints)."""
        return self.cfg.epochs > 0 and self.descriptors is None


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
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise BenchmarkError(
            f"Device {name!r} was requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); use cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}."
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


def dataset_split(spec: DatasetSpec, cfg: RunConfig) -> str:
    """The configured split of SPEC (its default when none is given), checked to exist;
    VALIDATION (the split carved from training) where the run trains with one."""
    split = cfg.split or spec.default_split
    if split == VALIDATION:
        if not (cfg.epochs > 0 and cfg.val_fraction):
            raise BenchmarkError(
                f"split={VALIDATION} evaluates on the validation split carved from the "
                "training pairs, so it needs a run that trains with one: epochs > 0 and "
                "val_fraction > 0 (--set val_fraction=0.05)."
            )
        return split
    if split not in spec.splits:
        raise BenchmarkError(
            f"Dataset {cfg.dataset!r} has no split {split!r}. Its splits: "
            f"{', '.join(spec.splits)} (or {VALIDATION}, carved from training)."
        )
    return split


def built_split(spec: DatasetSpec, split: str) -> str:
    """The split of SPEC to build for SPLIT: its default one under VALIDATION (whose test
    split is then replaced by the validation split and never evaluated)."""
    return spec.default_split if split == VALIDATION else split


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
        bundle = spec.build(cfg.data_root, built_split(spec, split), cfg.dataset_options)
    except ValidationError as exc:
        raise BenchmarkError(validation_message(exc, "dataset_options.")) from None
    if cfg.limit is not None:
        bundle.train = bundle.train.subset(cfg.limit)
        bundle.test = bundle.test.subset(cfg.limit)
    if split == VALIDATION:  # the very split training carves (same fraction and seed)
        bundle.test = carve_validation(bundle.train, cfg.val_fraction, cfg.val_seed)[1]
        bundle.split = VALIDATION
    if bundle.train.num_ground < 2 and cfg.epochs > 0:
        raise BenchmarkError(f"The training split of {cfg.dataset!r} has fewer than 2 pairs.")
    if bundle.test.num_ground == 0:
        raise BenchmarkError(f"The test split {split!r} of {cfg.dataset!r} is empty.")
    return bundle


def _digest(path: Path) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None  # reported by the checks (or the run) with a clear message


def plan(
    reg: Registry, cfg: RunConfig, weights: Path | None = None, descriptors: Path | None = None
) -> Job:
    """The Job of CFG: model options, split and identities (input files hashed)."""
    spec = reg.model(cfg.plugin)
    options = model_options(spec, cfg)
    split = dataset_split(reg.dataset(cfg.dataset), cfg)
    inputs = {
        key: _digest(path)
        for key, path in (("weights", weights), ("descriptors", descriptors))
        if path is not None
    }
    identity = run_identity(cfg, options, split, inputs)
    return Job(cfg, spec, options, split, identity, training_of(cfg, options, split), weights,
               descriptors)  # fmt: skip


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


def _meta_model(job: Job, options: ModelOptions) -> torch.nn.Module:
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return job.spec.build(options)


def check_weights(job: Job) -> None:
    """--weights must be readable and fit the model (keys and shapes), checked on a model
    built on the meta device (no memory, no pretrained weights)."""
    if job.weights is None:
        return
    checkpoint = weights.read_checkpoint(job.weights)
    with weights.checkpoint_follows():
        model = _meta_model(job, job.options)
    source = str(job.weights)
    state = model.adapt_checkpoint(checkpoint, source)  # official layouts mapped onto ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copying into meta tensors is a no-op, and says so
        weights.load_into(model, state, source)


def check_pretrained_applied(job: Job) -> None:
    """model.pretrained on a variant whose build loads no weights would be recorded but not
    applied: an error. The build runs on the meta device and stops at the first request."""
    pretrained = job.options.pretrained
    if not pretrained:
        return
    try:
        with weights.probe_weights():
            _meta_model(job, job.options)
    except weights.WeightsRequested:
        return
    except BenchmarkError:
        raise
    except Exception:  # the real build will report it
        return
    raise BenchmarkError(
        f"{job.spec.name}'s {job.cfg.variant!r} variant loads no pretrained weights, so "
        f"model.pretrained={pretrained!r} would be recorded without being applied. Drop "
        "--pretrained (or model.pretrained), or choose a variant that loads weights, such as "
        "--variant paper."
    )


def check_resume(job: Job) -> str | None:
    """With --resume: the checkpoints of this run's training identity, or an error naming
    what differs from a checkpoint of the same name with other settings. Returns a note
    when there is nothing to resume (the run starts from the beginning)."""
    if not job.trains:
        return None
    recorded = checkpoint.read_identity(job.ckpt_dir)
    if recorded is not None and recorded != job.training.settings:
        raise BenchmarkError(
            f"The checkpoints in {job.ckpt_dir} belong to other settings ("
            + "; ".join(differences(job.training.settings, recorded))
            + "). Move that folder away, or run without --resume to start again."
        )
    if checkpoint.latest(job.ckpt_dir) is not None:
        return None
    root, name = job.ckpt_dir.parent, job.training.name
    others = [p for p in sorted(root.glob(f"{name}*")) if p.is_dir() and p != job.ckpt_dir]
    others = [p for p in others if p.name == name or p.name.startswith(f"{name}-")]
    if not others:
        return f"Nothing to resume for {name}: no checkpoint of this run; starting from epoch 0."
    found = []
    for other in others:
        settings = checkpoint.read_identity(other)
        found.append((len(differences(job.training.settings, settings or {})), other, settings))
    _, other, settings = min(found, key=lambda f: f[0])
    if settings is None:
        what = "it was written before runs had identities, so what it trained is not known"
    else:
        what = "it differs in " + "; ".join(differences(job.training.settings, settings))
    raise BenchmarkError(
        f"--resume continues only the same run, and this run has no checkpoint. The folder "
        f"{other} holds checkpoints of {name} with other settings: {what}. Run with those "
        "settings to resume it, or without --resume to start this run from the beginning."
    )


# What a run does when the ok result of its identity exists: refuse (the default), keep it,
# or run again over it; --resume continues from its newest checkpoint instead.
Existing = Literal["refuse", "skip", "overwrite"]


def finished(jobs: Sequence[Job], existing: Existing = "refuse", resume: bool = False) -> list[Job]:
    """The JOBS whose ok result exists and is kept (with existing="skip"); raises, before any
    work, when one exists and neither --skip-existing, --overwrite nor --resume says what to
    do with it."""
    done = [job for job in jobs if results.holds_ok(job.result_path)]
    if existing == "skip":
        return done
    if done and existing == "refuse" and not resume:
        more = f" (and {len(done) - 1} other run(s) of this command)" if len(done) > 1 else ""
        flags = "--skip-existing to keep it, --overwrite to run it again" + (
            ", or --resume to continue from its newest checkpoint" if done[0].trains else ""
        )
        raise BenchmarkError(
            f"The ok result {done[0].result_path} of this run already exists{more}; add {flags}."
        )
    return []


def preflight(reg: Registry, jobs: Sequence[Job], resume: bool = False) -> list[str]:
    """Check what every job needs before any work starts: names, split, device, the files of
    a real dataset (a generated one is checked when a job builds it), input files, options
    a variant would ignore, what --resume would continue, the results folder. Returns notes
    to print; raises BenchmarkError on the first mistake."""
    seen: dict[str, str] = {}
    datasets: set[str] = set()
    notes = []
    for job in jobs:
        cfg = job.cfg
        if job.identity.stem in seen:
            raise BenchmarkError(
                f"{cfg.plugin} is asked for twice with the same settings ({job.identity.name}); "
                "name each run once."
            )
        seen[job.identity.stem] = cfg.plugin
        resolve_device(cfg.device)
        reg.loss(cfg.loss)
        for name in cfg.metrics or ():
            reg.metric(name)
        spec = reg.dataset(cfg.dataset)
        key = repr((cfg.dataset, cfg.data_root, cfg.split, cfg.dataset_options, cfg.limit))
        if spec.needs_root and key not in datasets:  # the user's files: read their listing now
            datasets.add(key)
            load_dataset(reg, cfg)
        elif spec.check is not None:  # a generated one: its options, and that they fit
            try:
                spec.check(built_split(spec, job.split), cfg.dataset_options)
            except ValidationError as exc:
                raise BenchmarkError(validation_message(exc, "dataset_options.")) from None
        if job.descriptors is not None and not job.descriptors.is_file():
            raise BenchmarkError(f"Descriptor file {str(job.descriptors)!r} does not exist.")
        check_trackers(cfg.log)
        check_weights(job)
        check_pretrained_applied(job)
        if job.weights is None and job.descriptors is None:  # those replace the start weights
            options = job.options
            weights.check_pretrained(cfg.plugin, options.pretrained, options.pretrained_weights())
        if resume and (note := check_resume(job)):
            notes.append(note)
    for folder in {Path(job.cfg.results_dir) for job in jobs}:
        check_writable(folder)
    return notes


def lock(jobs: Sequence[Job]) -> list[RunLock]:
    """One writer per run: lock each job's result and, when it trains, its checkpoints; a
    run another process holds is refused before any work."""
    held: list[RunLock] = []
    try:
        for job in jobs:
            what = f"The run {job.identity.stem}"
            held.append(RunLock(job.result_path.with_suffix(".lock"), what))
            if job.trains:  # every protocol of one training shares its checkpoints
                path = Path(job.cfg.results_dir) / f"{job.training.stem}.training.lock"
                held.append(RunLock(path, f"The training of {job.training.stem}"))
    except BaseException:
        for held_lock in held:
            held_lock.release()
        raise
    return held


def describe(jobs: Sequence[Job], resolved: Sequence[Resolved], fmt: str = "table") -> str:
    """What `config show` and `--dry-run` print: per job its identity, files, and every
    setting with its value, source and role (json or a table)."""
    out = []
    for job, res in zip(jobs, resolved, strict=True):
        rows = []
        for key, value, source, role in res.rows():
            if key == "split" and job.cfg.split is None:
                value, source = job.split, f"{job.cfg.dataset} default"
            rows.append({"setting": key, "value": value, "source": source, "role": role})
        out.append(
            {
                "plugin": job.cfg.plugin,
                "identity": job.identity.stem,
                "result": str(job.result_path),
                "checkpoints": str(job.ckpt_dir) if job.trains else None,
                "settings": rows,
                "identity_settings": job.identity.settings,
            }
        )
    if fmt == "json":
        return json.dumps(out, indent=2, default=str)
    text = []
    for entry in out:
        text.append(f"{entry['plugin']}: {entry['identity']}")
        text.append(f"  result:      {entry['result']}")
        if entry["checkpoints"]:
            text.append(f"  checkpoints: {entry['checkpoints']}")
        table = [
            [r["setting"], json.dumps(r["value"], default=str), r["source"], r["role"]]
            for r in entry["settings"]
        ]
        body = tabulate(table, headers=["setting", "value", "from", "role"], tablefmt="simple")
        text.append("\n".join("  " + line for line in body.splitlines()))
        text.append("")
    return "\n".join(text).rstrip() + "\n"
