"""Experiment suites as data: methods x seeds x overrides, each run then evaluated under the
robustness protocols; ``python -m benchmark suite FILE`` runs one and renders its page.

A suite may tune: every method gets the same search (each point of a grid trained with one
seed and scored on the validation split carved from training, ``split=validation``; the
test split is not evaluated), and the best point by validation R@1 (then R@5, R@10; the
earlier grid point on a full tie) is that method's setting in every run of the suite.

A run whose result exists with status ok is skipped and an interrupted one resumes, so a
stopped suite continues where it stopped. A protocol evaluation scores the final checkpoint
of its run (found from that run's result; the evaluation records it as its ``parent``); a
run that left no checkpoint (nothing to train) is run again under the protocol instead.
Protocol evaluations are never profiled: the protocol does not change the model's cost.
"""

from __future__ import annotations

import itertools
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark import results
from benchmark.config import RunConfig, load_config_file, merge, parse_sets, resolve
from benchmark.config import validation_message as invalid
from benchmark.data.base import VALIDATION
from benchmark.errors import BenchmarkError
from benchmark.renames import current_method

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
    tune: bool = Field(True, description="search the suite's tuning grid for these methods")

    @field_validator("methods")
    @classmethod
    def _current_names(cls, methods: list[str]) -> list[str]:
        return [current_method(name) for name in methods]


class Tuning(BaseModel):
    """The search every tuned method gets: each point of GRID (settings x values) trained
    with SEED and scored on the validation split."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0)
    grid: dict[str, list[Any]] = Field(min_length=1)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in the order the file lists them."""
        values = itertools.product(*self.grid.values())
        return [dict(zip(self.grid, point, strict=True)) for point in values]


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
    tuning: Tuning | None = Field(None, description="the same search for every method")
    groups: list[Group] = Field(min_length=1)


@dataclass(frozen=True)
class Run:
    """One planned run: its method, the settings it is resolved from (as a --config file's),
    the regime, the protocols its trained model is evaluated under afterwards, and the grid
    point it scores on validation when it is a tuning run."""

    method: str
    user: dict[str, Any]
    quick: bool
    protocols: tuple[str, ...]
    point: tuple[tuple[str, Any], ...] = ()


def load_suite(path: Path) -> Suite:
    """The suite in the YAML or TOML file PATH; a clear error when it is not one."""
    try:
        return Suite.model_validate(load_config_file(path))
    except ValidationError as exc:
        raise BenchmarkError(f"Suite file {str(path)!r}: " + invalid(exc)) from None


Chosen = dict[str, dict[str, Any]]  # method -> its tuned settings


def tuned_methods(suite: Suite) -> dict[str, Group]:
    """Each tuned method and the group it is tuned in (its first)."""
    if suite.tuning is None:
        return {}
    found: dict[str, Group] = {}
    for group in suite.groups:
        for method in group.methods if group.tune else ():
            found.setdefault(method, group)
    return found


def tuning_plan(suite: Suite, sets: dict[str, Any]) -> list[Run]:
    """The search of every tuned method: a run per grid point, scored on validation."""
    if suite.tuning is None:
        return []
    runs = []
    seed = suite.tuning.seed
    for method, group in tuned_methods(suite).items():
        for point in suite.tuning.points():
            user = merge(suite.settings, group.settings)
            user = merge(user, suite.seed_settings.get(seed, {}))
            user = merge(user, {**point, "seed": seed, "split": VALIDATION, "profile": False})
            user = merge(merge(user, {"results_dir": str(suite.results_dir)}), sets)
            runs.append(Run(method, user, suite.regime == "quick", (), tuple(point.items())))
    return runs


def plan(suite: Suite, sets: dict[str, Any], chosen: Chosen | None = None) -> list[Run]:
    """Every run of SUITE, in order, with each tuned method's CHOSEN settings (the first grid
    point where none is given yet); SETS (from --set) override every run's settings."""
    tuned = tuned_methods(suite)
    first = suite.tuning.points()[0] if suite.tuning is not None else {}
    runs = []
    for group in suite.groups:
        protocols = tuple(suite.protocols if group.protocols is None else group.protocols)
        for seed in suite.seeds if group.seeds is None else group.seeds:
            for override in group.overrides:
                user = merge(suite.settings, group.settings)
                user = merge(user, suite.seed_settings.get(seed, {}))
                for method in group.methods:
                    setting = (chosen or {}).get(method, first) if method in tuned else {}
                    own = merge(merge(merge(user, setting), override), {"seed": seed})
                    own = merge(merge(own, {"results_dir": str(suite.results_dir)}), sets)
                    runs.append(Run(method, own, suite.regime == "quick", protocols))
    return runs


def choose(reg: Registry, suite: Suite, tuning: list[Run]) -> tuple[Chosen, list[str]]:
    """Each tuned method's best grid point by validation R@1, then R@5 and R@10 (the earlier
    point on a full tie), from the results of TUNING; and the methods none of whose points
    succeeded."""
    chosen: Chosen = {}
    failed = []
    for method in tuned_methods(suite):
        scored = []
        mine = [run for run in tuning if run.method == method]
        for order, run in enumerate(mine):
            found = _found(reg, _choices(reg, run, None))
            if found is not None and found.status == "ok":
                key = tuple(float(found.metrics.get(k, 0.0)) for k in ("R@1", "R@5", "R@10"))
                scored.append((key, -order, dict(run.point)))
        if scored:
            chosen[method] = max(scored, key=lambda s: (s[0], s[1]))[2]
        else:
            failed.append(method)
    return chosen, failed


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
        print(f"[{self.done}/{self.total}] {_what(run, protocol)}: {note}", flush=True)


def _what(run: Run, protocol: str | None) -> str:
    """A step in a line: the method, then its tuning point, or its seed and protocol."""
    if run.point:
        return f"{run.method} tuning " + ", ".join(f"{k}={v}" for k, v in run.point)
    return f"{run.method} seed {run.user['seed']} {protocol or 'aligned'}"


def _evaluation(run: Run, protocol: str, parent: results.RunResult) -> Path | None:
    """An ok evaluation of PARENT's weights under PROTOCOL already in RUN's results folder,
    found by the parent it records, so it counts without the checkpoints (a fresh clone)."""
    folder = Path(run.user["results_dir"])
    name = parent.stem().rsplit("-", 1)[0] + "-" + protocol.replace("=", "")
    for path in sorted(folder.glob(f"{name}-*.json")):
        found = _existing(path)
        if found is not None and found.status == "ok" and found.parent == parent.stem():
            return path
    return None


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
    if protocol is not None and parent is not None and _evaluation(run, protocol, parent):
        progress.step(run, protocol, "done before, skipped")
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
    reg: Registry, suite: Suite, sets: dict[str, Any], jobs: int = 1, debug: bool = False
) -> int:
    """Check every run, then run the search of each tuned method and the suite's runs with
    the chosen settings (JOBS processes at a time); 0, 1 when some failed, 130/143 when
    stopped by a signal."""
    from benchmark.jobs import plan as plan_job
    from benchmark.jobs import preflight

    tuning = tuning_plan(suite, sets)
    every = tuning + plan(suite, sets)
    configs = [config(reg, run, p) for run in every for p in (None, *run.protocols)]
    preflight(reg, [plan_job(reg, cfg) for cfg in configs])
    code = run_runs(reg, tuning, suite.threads, jobs, debug) if tuning else 0
    if code in (130, 143):
        return code
    chosen, failed = choose(reg, suite, tuning)
    for method in failed:
        print(f"{method}: no point of the tuning grid succeeded; its runs are skipped.")
    runs = [run for run in plan(suite, sets, chosen) if run.method not in failed]
    main = run_runs(reg, runs, suite.threads, jobs, debug)
    return main if main in (130, 143) else max(code, main, 1 if failed else 0)


def run_runs(
    reg: Registry, runs: list[Run], threads: int | None, jobs: int = 1, debug: bool = False
) -> int:
    """Run RUNS and their protocol evaluations (JOBS processes at a time, each with THREADS
    torch threads); 0, 1 when some failed, 130/143 when stopped by a signal."""
    if jobs == 1:
        _threads(threads)
        return run_share(reg, runs, debug)
    shares = [runs[i::jobs] for i in range(jobs)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        codes = list(pool.map(_worker, shares, [threads] * jobs, [debug] * jobs))
    return next((c for c in codes if c in (130, 143)), max(codes))


def describe(reg: Registry, suite: Suite, sets: dict[str, Any]) -> str:
    """One line per result the suite makes: its file and whether it is there (the runs of
    tuned methods with the setting chosen so far, or the first grid point before any)."""
    from benchmark.runner import result_path

    tuning = tuning_plan(suite, sets)
    runs = tuning + plan(suite, sets, choose(reg, suite, tuning)[0])
    lines = []
    for run in runs:
        for protocol in (None, *run.protocols):
            if protocol is None:
                parent = _found(reg, _choices(reg, run, None))
            done = None
            if protocol is not None and parent is not None and parent.status == "ok":
                done = _evaluation(run, protocol, parent)
            choices = _choices(reg, run, protocol, parent)
            found = _found(reg, choices)
            state = "ok" if done else found.status if found is not None else "to run"
            path = done or result_path(reg, *choices[0])
            lines.append(f"{_what(run, protocol)}: {path} ({state})")
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
    overrides = parse_sets(sets)
    if dry_run:
        print(describe(reg, suite, overrides))
        return 0
    code = run_suite(reg, suite, overrides, jobs, debug)
    if code in (0, 1) and suite.page is not None:
        leaderboard_command(suite.results_dir, suite.page, check=False)
    return code
