"""Experiment suites as data: methods x seeds x overrides, each run then evaluated under the
robustness protocols; ``python -m benchmark suite FILE`` runs one and renders its page.

A run whose result exists with status ok is skipped and an interrupted one resumes, so a
stopped suite continues where it stopped. A protocol evaluation scores the final checkpoint
of its run (found from that run's result; the evaluation records it as its ``parent``); a
run that left no checkpoint (nothing to train) is run again under the protocol instead.
Protocol evaluations are never profiled: the protocol does not change the model's cost.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark import results
from benchmark.config import RunConfig, load_config_file, merge, parse_sets, resolve
from benchmark.config import validation_message as invalid
from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    from benchmark.registry import Registry


class Group(BaseModel):
    """Methods run under the same settings; each override adds a run per method and seed."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)
    overrides: list[dict[str, Any]] = Field(default_factory=lambda: [{}], min_length=1)
    seeds: list[int] | None = Field(None, description="instead of the suite's seeds")
    protocols: list[str] | None = Field(None, description="instead of the suite's protocols")


class Suite(BaseModel):
    """A suite file: where results go, the regime, seeds, protocols, settings and groups."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    results_dir: Path
    page: Path | None = Field(None, description="leaderboard page rendered after the runs")
    regime: Literal["quick", "paper"] = "paper"
    threads: int | None = Field(None, ge=1, description="torch threads of every run")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    protocols: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict, description="for every run")
    seed_settings: dict[int, dict[str, Any]] = Field(
        default_factory=dict, description="for the runs of one seed, over the others"
    )
    groups: list[Group] = Field(min_length=1)


@dataclass(frozen=True)
class Run:
    """One planned run: its method, the settings it is resolved from (as a --config file's),
    the regime, and the protocols its trained model is evaluated under afterwards."""

    method: str
    user: dict[str, Any]
    quick: bool
    protocols: tuple[str, ...]


def load_suite(path: Path) -> Suite:
    """The suite in the YAML or TOML file PATH; a clear error when it is not one."""
    try:
        return Suite.model_validate(load_config_file(path))
    except ValidationError as exc:
        raise BenchmarkError(f"Suite file {str(path)!r}: " + invalid(exc)) from None


def plan(suite: Suite, sets: dict[str, Any]) -> list[Run]:
    """Every run of SUITE, in order; SETS (from --set) override every run's settings."""
    runs = []
    for group in suite.groups:
        protocols = tuple(suite.protocols if group.protocols is None else group.protocols)
        for seed in suite.seeds if group.seeds is None else group.seeds:
            for override in group.overrides:
                user = merge(suite.settings, group.settings)
                user = merge(user, suite.seed_settings.get(seed, {}))
                user = merge(merge(user, override), {"seed": seed})
                user = merge(merge(user, {"results_dir": str(suite.results_dir)}), sets)
                quick = suite.regime == "quick"
                runs += [Run(m, user, quick, protocols) for m in group.methods]
    return runs


def config(
    reg: Registry, run: Run, protocol: str | None = None, weights: bool = False
) -> RunConfig:
    """The config of RUN, or of its evaluation under PROTOCOL: of its checkpoint when
    WEIGHTS (no training), else a run of its own under the protocol."""
    user = run.user
    if protocol is not None:
        user = merge(user, {"protocol": protocol, "profile": False})
        user = merge(user, {"epochs": 0} if weights else {})
    return resolve(reg.model(run.method), user, run.quick)


def checkpoint_of(result: results.RunResult) -> Path | None:
    """The weights RESULT's metrics were measured with, when they are there and intact: the
    epoch chosen on validation (selection=best), else the final checkpoint."""
    from benchmark import checkpoint

    selected = result.training.get("selected_weights")
    if isinstance(selected, str) and selected and Path(selected).is_file():
        return Path(selected)
    folder = result.training.get("checkpoint")
    found = checkpoint.verify(Path(folder)) if isinstance(folder, str) and folder else None
    return found.weights if found is not None else None


def _existing(path: Path) -> results.RunResult | None:
    try:
        return results.load(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


Choice = tuple[RunConfig, Path | None]  # a config and the weights it evaluates


def _choices(
    reg: Registry, run: Run, protocol: str | None, parent: results.RunResult | None = None
) -> list[Choice]:
    """The configs a step of RUN may have run with: the run itself, or its evaluation under
    PROTOCOL of its PARENT's weights, then (no weights) as a run of its own."""
    if protocol is None:
        return [(config(reg, run), None)]
    weights = checkpoint_of(parent) if parent is not None and parent.status == "ok" else None
    own = (config(reg, run, protocol), None)
    return [(config(reg, run, protocol, weights=True), weights), own] if weights else [own]


def _found(reg: Registry, choices: list[Choice]) -> results.RunResult | None:
    """The existing result of CHOICES: an ok one first, else any."""
    from benchmark.runner import result_path

    existing = [r for c, w in choices if (r := _existing(result_path(reg, c, w))) is not None]
    return next((r for r in existing if r.status == "ok"), existing[0] if existing else None)


@dataclass
class _Progress:
    total: int
    done: int = 0
    failed: int = 0

    def step(self, run: Run, protocol: str | None, note: str) -> None:
        self.done += 1
        what = f"{run.method} seed {run.user['seed']} {protocol or 'aligned'}"
        print(f"[{self.done}/{self.total}] {what}: {note}", flush=True)


def _step(
    reg: Registry,
    run: Run,
    protocol: str | None,
    parent: results.RunResult | None,
    progress: _Progress,
    debug: bool,
) -> int | None:
    """Make one result of RUN unless it is there; None, or the exit code of a stop by signal."""
    from benchmark.runner import result_path, run_all

    if protocol is not None and (parent is None or parent.status != "ok"):
        progress.step(run, protocol, "skipped, its run did not succeed")
        return None
    choices = _choices(reg, run, protocol, parent)
    found = _found(reg, choices)
    if found is not None and found.status == "ok":
        progress.step(run, protocol, "done before, skipped")
        return None
    cfg, weights = choices[0]
    before = _existing(result_path(reg, cfg, weights))
    resume = before is not None and before.status == "interrupted"
    progress.step(run, protocol, "resuming" if resume else "running")
    code = run_all(reg, [cfg], resume=resume, weights=weights, debug=debug)
    if code in (130, 143):
        return code
    progress.failed += code != 0
    return None


def run_share(reg: Registry, runs: list[Run], debug: bool = False) -> int:
    """Run RUNS and their protocol evaluations in turn; 0, 1 when some failed, 130/143 when
    stopped by a signal."""
    steps = [(run, p) for run in runs for p in (None, *run.protocols)]
    progress = _Progress(len(steps))
    parent = None
    for run, protocol in steps:
        if (stopped := _step(reg, run, protocol, parent, progress, debug)) is not None:
            return stopped
        if protocol is None:
            parent = _found(reg, _choices(reg, run, None))
    if progress.failed:
        print(f"{progress.failed} run(s) failed; see their result files.", file=sys.stderr)
    return 1 if progress.failed else 0


def _worker(runs: list[Run], threads: int | None, debug: bool) -> int:
    """A process of ``--jobs``: its share of the runs, with the installed plugins."""
    from benchmark.registry import registry

    _threads(threads)
    return run_share(registry(), runs, debug)


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def run_suite(
    reg: Registry, runs: list[Run], threads: int | None, jobs: int = 1, debug: bool = False
) -> int:
    """Check every run, then run them (JOBS processes at a time, each with THREADS torch
    threads); 0, 1 when some failed, 130/143 when stopped by a signal."""
    from benchmark.jobs import plan, preflight

    configs = [config(reg, run, p) for run in runs for p in (None, *run.protocols)]
    preflight(reg, [plan(reg, cfg) for cfg in configs])
    if jobs == 1:
        _threads(threads)
        return run_share(reg, runs, debug)
    shares = [runs[i::jobs] for i in range(jobs)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        codes = list(pool.map(_worker, shares, [threads] * jobs, [debug] * jobs))
    return next((c for c in codes if c in (130, 143)), max(codes))


def describe(reg: Registry, runs: list[Run]) -> str:
    """One line per result the suite makes: its file and whether it is there."""
    from benchmark.runner import result_path

    lines = []
    for run in runs:
        for protocol in (None, *run.protocols):
            if protocol is None:
                parent = _found(reg, _choices(reg, run, None))
            choices = _choices(reg, run, protocol, parent)
            found = _found(reg, choices)
            state = found.status if found is not None else "to run"
            what = f"{run.method} seed {run.user['seed']} {protocol or 'aligned'}"
            lines.append(f"{what}: {result_path(reg, *choices[0])} ({state})")
    return "\n".join(lines)


def suite_command(
    file: Path,
    results_dir: Path | None,
    page: Path | None,
    sets: list[str],
    dry_run: bool,
    jobs: int,
    debug: bool,
) -> int:
    """``python -m benchmark suite FILE``: run the suite (or list it), then render its page."""
    from benchmark.leaderboard import leaderboard_command
    from benchmark.registry import registry

    if jobs < 1:
        raise BenchmarkError(f"--jobs must be 1 or more, got {jobs}.")
    suite = load_suite(file)
    suite = suite.model_copy(
        update={"results_dir": results_dir or suite.results_dir, "page": page or suite.page}
    )
    reg = registry()
    runs = plan(suite, parse_sets(sets))
    if dry_run:
        print(describe(reg, runs))
        return 0
    code = run_suite(reg, runs, suite.threads, jobs, debug)
    if code in (0, 1) and suite.page is not None:
        leaderboard_command(suite.results_dir, suite.page, check=False)
    return code
