"""Command line: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.errors import BenchmarkError


def _plugins(value: str) -> list[str]:
    from benchmark.renames import current_method

    names = [current_method(p.strip()) for p in value.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no method named in {value!r}; e.g. --plugins safa,saig")
    return names


def _workers(value: str) -> int | str:
    if value == "auto" or value.isdigit():
        return value if value == "auto" else int(value)
    raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {value!r}")


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default: the value, 'off' for a switch, or what the
    help itself says it is when it is no fixed value (the recipe's, the dataset's, ...)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings:  # a positional argument
            return text
        if action.nargs == 0:
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _debug_flag() -> argparse.ArgumentParser:
    """--debug, accepted after a command as well as before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # the value given before the command stays
        help="show tracebacks (default: off)",
    )
    return common


def _add_config_args(p: argparse.ArgumentParser, regime_default: str) -> None:
    """What chooses a run's settings: plugins, variant, regime, a file and --set."""
    from benchmark import regimes

    p.add_argument("--plugins", type=_plugins, required=True, help="methods: a,b,... or 'all'")
    p.add_argument(
        "--variant",
        default=None,
        help="model variant (paper, tiny, ...; default: the regime's, paper or tiny)",
    )
    p.add_argument(
        "--regime",
        choices=("auto", *sorted(regimes.available())),
        default=regime_default,
        help="settings layered over the paper recipe (benchmark/regimes/*.yaml); auto = "
        + ", ".join(
            f"{r.name} on {r.default_when.describe()}"
            for r in regimes.available().values()
            if r.default_when is not None
        )
        + ", else "
        + next(r.name for r in regimes.available().values() if r.default),
    )
    p.add_argument(
        "--config", type=Path, default=None, help="YAML or TOML settings file (default: none)"
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set model.channel_pool=mean (default: none)",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: auto)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """What a run and an evaluation share: data, seed, evaluation and where results go."""
    p.add_argument("--dataset", default=None, help="dataset name (default: synthetic)")
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder of the dataset (default: none; the real datasets need it)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="split evaluated: one of the dataset's, or validation (carved from training; "
        "the test split is then not evaluated) (default: the dataset's test split)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="cap train and test pairs (default: no cap)"
    )
    p.add_argument(
        "--results-dir", type=Path, default=None, help="where results go (default: results)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="DataLoader workers per process, or auto (from the cores and the device; default: 0)",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="read unreadable images as black ones (counted in the result) instead of stopping",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="evaluation protocol: aligned, unknown-orientation or fov=N (degrees; "
        "default: aligned)",
    )
    p.add_argument(
        "--eval-memory",
        dest="eval_memory_mb",
        type=int,
        default=None,
        metavar="MB",
        help="working memory of retrieval in MiB (query chunk size; default: 512)",
    )
    p.add_argument(
        "--save-descriptors",
        action="store_true",
        default=None,
        help="keep the test descriptors beside the result (for eval --descriptors)",
    )


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """What only training uses (see TRAINING_FLAGS)."""
    p.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: the recipe's)"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="training batch (default: the recipe's)"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    p.add_argument(
        "--log",
        action="append",
        choices=("tensorboard",),
        default=None,
        help="also log to TensorBoard (needs the tensorboard package; default: only the "
        "<result>.log.jsonl and .log.csv every run writes beside its result)",
    )
    p.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        default=None,
        help="ImageNet weights through timm, or a local weights file (default: the "
        "variant's: a paper variant starts from its paper's weights, tiny from scratch)",
    )


# The flags of training, which `eval` does not take (with run's --resume and --amp).
TRAINING_FLAGS = ("--epochs", "--batch-size", "--lr", "--log", "--pretrained", "--resume", "--amp")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """How run and eval report, and what they do with a result that exists."""
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved settings, where each came from, and the run's identity and "
        "files; run nothing",
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: print the results (with --dry-run: the settings) as JSON on stdout, "
        "everything else on stderr",
    )
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing",
        dest="existing",
        action="store_const",
        const="skip",
        default="refuse",
        help="keep a run's ok result when it exists and skip the run (default: refuse to "
        "run over an ok result)",
    )
    existing.add_argument(
        "--overwrite",
        dest="existing",
        action="store_const",
        const="overwrite",
        help="run again over a run's ok result",
    )


def _add_eval_sources(p: argparse.ArgumentParser, required: bool) -> None:
    source = p.add_mutually_exclusive_group(required=required)
    source.add_argument("--weights", type=Path, help="safetensors (or torch) file (default: none)")
    source.add_argument(
        "--descriptors",
        type=Path,
        help="descriptors saved by run --save-descriptors: score them again, no model "
        "(default: none)",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m benchmark``."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="Cross-view geo-localization benchmark harness.",
        formatter_class=_Help,
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)
    common = [_debug_flag()]

    def command(parent: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return parent.add_parser(name, formatter_class=_Help, parents=common, **kwargs)

    ls = command(sub, "list", help="installed methods, datasets, losses, metrics")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output")
    show = command(sub, "show", help="the card of a method and what each variant changes")
    show.add_argument("method")
    codes = (
        "exit codes: 0 every run ok; 1 some run failed (see its result file); 2 bad input, "
        "nothing was run; 130/143 a SIGINT/SIGTERM kept a run from completing (its result says "
        "what to do"
    )
    run = command(
        sub,
        "run",
        help="train and evaluate",
        epilog=codes + ": --resume continues from the newest checkpoint)",
    )
    _add_config_args(run, "auto")
    _add_data_args(run)
    _add_training_args(run)
    _add_output_args(run)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint of the same run (also over its ok result)",
    )
    run.add_argument(
        "--amp",
        action="store_true",
        help="train in mixed precision: fp16 autocast with loss scaling, CUDA only "
        "(same as --set precision=fp16; default: the recipe's, fp32 for every paper)",
    )
    ev = command(
        sub,
        "eval",
        help="evaluate weights or saved descriptors without training",
        epilog=codes + ")",
    )
    _add_config_args(ev, "auto")
    _add_data_args(ev)
    _add_output_args(ev)
    _add_eval_sources(ev, required=True)
    cfg = command(sub, "config", help="inspect resolved settings")
    csub = cfg.add_subparsers(dest="action", required=True)
    cshow = command(
        csub,
        "show",
        help="the settings a run would use, where each came from, its identity and files",
    )
    _add_config_args(cshow, "auto")
    _add_data_args(cshow)
    _add_training_args(cshow)
    _add_eval_sources(cshow, required=False)
    cshow.add_argument("--format", choices=("table", "json"), default="table", help="output")
    prof = command(sub, "profile", help="params, GMACs, latency, memory")
    _add_config_args(prof, "paper")
    prof.add_argument("--format", choices=("table", "json"), default="table", help="output")
    prof.add_argument(
        "--wide",
        action="store_true",
        help="every column (inputs, GFLOPs, the paper's figures, throughput) and every note; "
        "the default table fits 80 columns",
    )
    lb = command(sub, "leaderboard", help="render leaderboard/LEADERBOARD.md from results")
    lb.add_argument(
        "--results-dir", type=Path, default=Path("leaderboard/results"), help="result files"
    )
    lb.add_argument(
        "--output", type=Path, default=Path("leaderboard/LEADERBOARD.md"), help="the page"
    )
    lb.add_argument("--check", action="store_true", help="fail if the output is out of date")
    lb.add_argument(
        "action",
        nargs="?",
        choices=("render", "migrate"),
        default="render",
        help="render (default) the page, or migrate older result files to the current schema",
    )
    su = command(
        sub,
        "suite",
        help="run an experiment suite file (skips runs whose results exist), render its page",
    )
    su.add_argument("file", type=Path, help="suite file (YAML or TOML)")
    su.add_argument(
        "--results-dir", type=Path, default=None, help="instead of the suite's (default: its own)"
    )
    su.add_argument(
        "--page", type=Path, default=None, help="instead of the suite's page (default: its own)"
    )
    su.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every run, e.g. --set epochs=1 (default: none)",
    )
    su.add_argument("--dry-run", action="store_true", help="list the runs and which are done")
    su.add_argument("--jobs", type=int, default=1, help="runs at a time, in separate processes")
    res = command(sub, "results", help="list the runs in a results folder, or compare two")
    res.add_argument(
        "runs", nargs="*", metavar="RUN", help="two result names or files: compare them"
    )
    res.add_argument("--results-dir", type=Path, default=Path("results"), help="result files")
    new = command(sub, "new-plugin", help="write a plugin package skeleton for a new method")
    new.add_argument("name", help="the method's name, e.g. my-net")
    new.add_argument(
        "--dir", type=Path, default=None, help="where to write it (default: ./cvgl-NAME)"
    )
    ds = command(sub, "datasets", help="dataset tools")
    dsub = ds.add_subparsers(dest="action", required=True)
    chk = command(dsub, "check", help="validate a dataset folder without training")
    chk.add_argument("--dataset", required=True, help="dataset name")
    chk.add_argument("--data-root", type=Path, required=True, help="folder of the dataset")
    chk.add_argument("--split", default=None, help="split to check (default: the dataset's)")
    return ap


def _user_layers(args: argparse.Namespace, *extra: Any) -> list:
    """The user's settings in order: --config file < flags < --set (< EXTRA layers)."""
    from benchmark.config import ROLES, Layer, load_config_file, parse_sets

    layers = []
    if args.config:
        layers.append(Layer("file", f"file {args.config}", load_config_file(args.config)))
    # a flag's destination is the setting it sets; --plugins and --regime are not settings
    flags: dict[str, Any] = {
        name: getattr(args, name)
        for name in ROLES
        if name not in ("plugin", "regime") and getattr(args, name, None) is not None
    }
    if getattr(args, "pretrained", None) is not None:
        flags["model"] = {"pretrained": args.pretrained}
    if getattr(args, "skip_bad_images", False):
        flags["dataset_options"] = {"skip_bad_images": True}
    if getattr(args, "amp", False):  # run only
        flags["precision"] = "fp16"
    if flags:
        layers.append(Layer("flag", "flag", flags))
    if args.sets:
        layers.append(Layer("set", "--set", parse_sets(args.sets)))
    return [*layers, *extra]


def _resolved(args: argparse.Namespace, *extra: Any) -> list:
    """The resolved run of every requested method whose plugin package imported."""
    import torch

    from benchmark import regimes
    from benchmark.config import merge, resolve_layers
    from benchmark.registry import registry
    from benchmark.runner import import_failures

    reg = registry()
    names = sorted(reg.models) if args.plugins == ["all"] else args.plugins
    broken = import_failures(reg, args.plugins)
    names = [name for name in names if name not in broken]
    if broken and not names:
        reg.model(next(iter(broken)))  # nothing else to run: fail with the import error
    specs = [reg.model(name) for name in names]
    layers = _user_layers(args, *extra)
    user: dict[str, Any] = {}
    for layer in layers:
        user = merge(user, layer.values)
    dataset = str(user.get("dataset", "synthetic"))
    reg.dataset(dataset)
    regime = args.regime
    if regime == "auto":
        device = str(user.get("device", "auto"))
        gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        regime = regimes.auto(dataset, gpu)
    return [resolve_layers(spec, layers, regime) for spec in specs]


def _eval_layer() -> Any:
    from benchmark.config import Layer

    return Layer("flag", "eval (no training)", {"epochs": 0})


def _show(args: argparse.Namespace, resolved: list) -> int:
    from benchmark.jobs import describe, plan
    from benchmark.registry import registry

    reg = registry()
    weights, descriptors = getattr(args, "weights", None), getattr(args, "descriptors", None)
    jobs = [plan(reg, r.run, weights, descriptors) for r in resolved]
    print(describe(jobs, resolved, args.format))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print what is installed, without importing the plugin packages that declare their names."""
    from benchmark.registry import registry

    reg = registry()
    kinds = {"methods": "models", "datasets": "datasets", "losses": "losses", "metrics": "metrics"}
    if args.format == "json":
        print(json.dumps({label: reg.names(kind) for label, kind in kinds.items()}))
        return 0
    for label, kind in kinds.items():
        print(f"{label}:")
        for name in reg.names(kind):
            info = reg.info(kind, name)
            print(f"  {name:24s} {info.package} {info.version} (entry point {info.name})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a method's card (imports only the package that provides it)."""
    from benchmark.registry import registry

    spec = registry().model(args.method)
    card = spec.card
    info = registry().info("models", spec.name)
    print(f"{spec.name}: {card.title}\n  {card.authors}, {card.venue}\n  {card.url}\n")
    print(f"package: {info.package} {info.version} (entry point {info.name})\n")
    print(card.summary + "\n")
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in spec.recipe.model_dump().items()))
    print("paper options: " + ", ".join(f"{k}={v}" for k, v in spec.options().model_dump().items()))
    print("variants (what each changes in the paper variant's options):")
    for variant in sorted(set(spec.variants) - {"paper"}):
        changes = spec.changes(variant)
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
        print(f"  {variant}: {listed or 'nothing'}")
    for dataset, numbers in card.reported.items():
        print(f"reported on {dataset}: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))
    if card.reported_cost:
        print("reported cost: " + ", ".join(f"{k}={v}" for k, v in card.reported_cost.items()))
    for note in card.notes:
        print(f"note: {note}")
    return 0


def _report(args: argparse.Namespace, work: Callable[[list], int]) -> int:
    """Run WORK (which appends each result it writes or keeps to a list); with --format json
    print those results as JSON on stdout and send every other line to stderr."""
    from benchmark.runner import results_json

    written: list = []
    if args.format != "json":
        return work(written)
    with contextlib.redirect_stdout(sys.stderr):
        code = work(written)
    print(results_json(written))
    return code


def cmd_run(args: argparse.Namespace) -> int:
    """Train and evaluate every requested method."""
    from benchmark.registry import registry
    from benchmark.runner import import_failures, record_import_failures, run_all

    resolved = _resolved(args)
    if args.dry_run:
        return _show(args, resolved)
    reg = registry()
    configs = [r.run for r in resolved]
    failures = import_failures(reg, args.plugins)

    def work(written: list) -> int:
        code = run_all(
            reg,
            configs,
            resume=args.resume,
            debug=args.debug,
            existing=args.existing,
            written=written,
        )
        return max(code, record_import_failures(reg, failures, configs, written))

    return _report(args, work)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate given weights (no training)."""
    from benchmark.registry import registry
    from benchmark.runner import run_all

    resolved = _resolved(args, _eval_layer())
    if args.dry_run:
        return _show(args, resolved)
    return _report(
        args,
        lambda written: run_all(
            registry(),
            [r.run for r in resolved],
            weights=args.weights,
            debug=args.debug,
            descriptors=args.descriptors,
            existing=args.existing,
            written=written,
        ),
    )


def cmd_config(args: argparse.Namespace) -> int:
    """Show the resolved settings of a run (eval's when --weights/--descriptors is given)."""
    evaluating = args.weights is not None or args.descriptors is not None
    return _show(args, _resolved(args, *([_eval_layer()] if evaluating else [])))


def cmd_profile(args: argparse.Namespace) -> int:
    """Cost figures of each method at its resolved settings."""
    from benchmark.profiling.reporting import profile_command

    return profile_command(_resolved(args), args.format, args.wide)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render (or check) the leaderboard."""
    from benchmark.leaderboard import leaderboard_command, migrate_command

    if args.action == "migrate":
        return migrate_command(args.results_dir)
    return leaderboard_command(args.results_dir, args.output, args.check)


def cmd_suite(args: argparse.Namespace) -> int:
    """Run an experiment suite."""
    from benchmark.suite import suite_command

    return suite_command(
        args.file, args.results_dir, args.page, args.sets, args.dry_run, args.jobs, args.debug
    )


def cmd_results(args: argparse.Namespace) -> int:
    """List or compare results."""
    from benchmark.browse import compare_runs, list_runs

    if len(args.runs) not in (0, 2):
        raise BenchmarkError("`results` compares exactly two runs: results RUN_A RUN_B.")
    if args.runs:
        print(compare_runs(args.results_dir, *args.runs))
    else:
        print(list_runs(args.results_dir))
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Write a plugin package skeleton."""
    from benchmark.scaffold import new_plugin_command

    return new_plugin_command(args.name, args.dir)


def cmd_datasets(args: argparse.Namespace) -> int:
    """Dataset tools."""
    from benchmark.data.check import check_command

    return check_command(args.dataset, args.data_root, args.split)


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "run": cmd_run,
    "eval": cmd_eval,
    "config": cmd_config,
    "profile": cmd_profile,
    "leaderboard": cmd_leaderboard,
    "suite": cmd_suite,
    "results": cmd_results,
    "new-plugin": cmd_new_plugin,
    "datasets": cmd_datasets,
}


def main(argv: list[str] | None = None) -> int:
    """Parse ARGV, run the command, turn user errors into one clear message."""
    from benchmark.interrupt import Interrupted, exit_code, signal_name

    ap = parser()
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        training = [flag for a in unknown if (flag := a.split("=")[0]) in TRAINING_FLAGS]
        if args.command == "eval" and training:
            ap.error(
                f"eval does not train, so it takes no training flags ({', '.join(training)}): "
                "drop them, or use run to train"
            )
        ap.error("unrecognized arguments: " + " ".join(unknown))
    try:
        return COMMANDS[args.command](args)
    except BenchmarkError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as stop:
        print(
            f"Stopped at once by a second {signal_name(stop.signum)}: nothing more was written "
            "(a run's result keeps its previous state; the newest checkpoint stays).",
            file=sys.stderr,
        )
        return exit_code(stop.signum)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
