"""Runs (method, dataset, split) jobs one after another (each in its mode, see modes.py)
and writes their results. One failing method never stops the others; its result says what
went wrong."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark import distributed, interrupt, results
from benchmark.config import RunConfig
from benchmark.errors import BenchmarkError, user_message
from benchmark.jobs import Existing, Job, finished, lock, plan, preflight
from benchmark.metrics import RECALLS
from benchmark.modes import execute
from benchmark.registry import Registry


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
    """Run one method end to end and return its ok, failed or interrupted result; raises only
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
