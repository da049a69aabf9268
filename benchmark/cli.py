"""Command line: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.errors import BenchmarkError


def _plugins(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", type=_plugins, required=True, help="a,b,... or 'all'")
    p.add_argument("--dataset", default=None, help="dataset name (default: synthetic)")
    p.add_argument("--data-root", type=Path, default=None, help="folder of the dataset")
    p.add_argument("--split", default=None, help="test split (dataset default otherwise)")
    p.add_argument("--variant", default=None, help="model variant (paper, tiny, ...)")
    p.add_argument(
        "--regime",
        choices=("auto", "quick", "paper"),
        default="auto",
        help="auto = quick on the synthetic world without a GPU, else paper",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--limit", type=int, default=None, help="cap train and test pairs")
    p.add_argument("--config", type=Path, default=None, help="YAML or TOML settings file")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set model.channel_pool=mean",
    )
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="read unreadable images as black ones (counted in the result) instead of stopping",
    )
    p.add_argument(
        "--protocol",
        default=None,
        help="evaluation protocol: aligned (default), unknown-orientation or fov=N (degrees)",
    )
    p.add_argument(
        "--eval-memory",
        type=int,
        default=None,
        metavar="MB",
        help="working memory of retrieval in MiB (query chunk size; default 512)",
    )
    p.add_argument(
        "--save-descriptors",
        action="store_true",
        default=None,
        help="keep the test descriptors beside the result (for eval --descriptors)",
    )
    p.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        default=None,
        help="ImageNet weights through timm, or a local weights file",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m benchmark``."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmark", description="Cross-view geo-localization benchmark harness."
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="installed models, datasets, losses, metrics")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    show = sub.add_parser("show", help="the card of a method")
    show.add_argument("plugin")
    run = sub.add_parser(
        "run",
        help="train and evaluate",
        epilog="exit codes: 0 every run ok; 1 some run failed (see its result file); 2 bad "
        "input, nothing was run; 130/143 stopped by SIGINT/SIGTERM after writing a "
        "checkpoint (continue with --resume)",
    )
    _add_run_args(run)
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ev = sub.add_parser("eval", help="evaluate weights or saved descriptors without training")
    _add_run_args(ev)
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path, help="safetensors (or torch) file")
    source.add_argument(
        "--descriptors",
        type=Path,
        help="descriptors saved by run --save-descriptors: score them again, no model",
    )
    prof = sub.add_parser("profile", help="params, GMACs, latency, memory")
    prof.add_argument("--plugins", type=_plugins, required=True)
    prof.add_argument("--format", choices=("table", "json"), default="table")
    prof.add_argument("--device", default="cpu")
    prof.add_argument("--variant", default="paper")
    lb = sub.add_parser("leaderboard", help="render leaderboard/LEADERBOARD.md from results")
    lb.add_argument("--results-dir", type=Path, default=Path("leaderboard/results"))
    lb.add_argument("--output", type=Path, default=Path("leaderboard/LEADERBOARD.md"))
    lb.add_argument("--check", action="store_true", help="fail if the output is out of date")
    res = sub.add_parser("results", help="list the runs in a results folder, or compare two")
    res.add_argument(
        "runs", nargs="*", metavar="RUN", help="two result names or files: compare them"
    )
    res.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results")
    ds = sub.add_parser("datasets", help="dataset tools")
    dsub = ds.add_subparsers(dest="action", required=True)
    chk = dsub.add_parser("check", help="validate a dataset folder without training")
    chk.add_argument("--dataset", required=True)
    chk.add_argument("--data-root", type=Path, required=True)
    chk.add_argument("--split", default=None)
    return ap


def _user_settings(args: argparse.Namespace) -> dict[str, Any]:
    from benchmark.config import load_config_file, merge, parse_sets

    user: dict[str, Any] = load_config_file(args.config) if args.config else {}
    flags = {
        "dataset": args.dataset,
        "data_root": args.data_root,
        "split": args.split,
        "variant": args.variant,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "limit": args.limit,
        "results_dir": args.results_dir,
        "device": args.device,
        "seed": args.seed,
        "workers": args.workers,
        "protocol": args.protocol,
        "eval_memory_mb": args.eval_memory,
        "save_descriptors": args.save_descriptors,
    }
    user = merge(user, {k: v for k, v in flags.items() if v is not None})
    if args.pretrained is not None:
        user = merge(user, {"model": {"pretrained": args.pretrained}})
    if args.skip_bad_images:
        user = merge(user, {"dataset_options": {"skip_bad_images": True}})
    return merge(user, parse_sets(args.sets))


def _configs(args: argparse.Namespace) -> list:
    import torch

    from benchmark.config import resolve
    from benchmark.registry import registry
    from benchmark.runner import import_failures

    reg = registry()
    names = sorted(reg.models) if args.plugins == ["all"] else args.plugins
    broken = import_failures(reg, args.plugins)
    names = [name for name in names if name not in broken]
    if broken and not names:
        reg.model(next(iter(broken)))  # nothing else to run: fail with the import error
    user = _user_settings(args)
    dataset = user.get("dataset", "synthetic")
    reg.dataset(dataset)
    on_gpu = str(user.get("device", "auto")).startswith("cuda") or (
        user.get("device", "auto") == "auto" and torch.cuda.is_available()
    )
    if args.regime == "auto":
        quick = dataset.startswith("synthetic") and not on_gpu
    else:
        quick = args.regime == "quick"
    return [resolve(reg.model(name), user, quick) for name in names]


def cmd_list(args: argparse.Namespace) -> int:
    """Print what is installed."""
    from benchmark.registry import registry

    reg = registry()
    if args.format == "json":
        print(
            json.dumps(
                {k: sorted(getattr(reg, k)) for k in ("models", "datasets", "losses", "metrics")}
            )
        )
        return 0
    for kind in ("models", "datasets", "losses", "metrics"):
        print(f"{kind}:")
        for name in sorted(getattr(reg, kind)):
            origin = reg.origin[(kind, name)]
            print(f"  {name:24s} {origin.package} {origin.version} (plugin {origin.name})")
    for name, error in reg.load_errors.items():
        print(f"broken plugin {name}: {error}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a method's card."""
    from benchmark.registry import registry

    spec = registry().model(args.plugin)
    card = spec.card
    print(f"{spec.name}: {card.title}\n  {card.authors}, {card.venue}\n  {card.url}\n")
    print(card.summary + "\n")
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in spec.recipe.model_dump().items()))
    print("paper options: " + ", ".join(f"{k}={v}" for k, v in spec.options().model_dump().items()))
    print("variants: " + ", ".join(sorted({"paper", *spec.variants})))
    for dataset, numbers in card.reported.items():
        print(f"reported on {dataset}: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))
    if card.reported_cost:
        print("reported cost: " + ", ".join(f"{k}={v}" for k, v in card.reported_cost.items()))
    for note in card.notes:
        print(f"note: {note}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Train and evaluate every requested plugin."""
    from benchmark.registry import registry
    from benchmark.runner import import_failures, record_import_failures, run_all

    reg = registry()
    configs = _configs(args)
    code = run_all(reg, configs, resume=args.resume, debug=args.debug)
    return max(code, record_import_failures(import_failures(reg, args.plugins), configs))


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate given weights (no training)."""
    from benchmark.registry import registry
    from benchmark.runner import run_all

    args.sets = [*args.sets, "epochs=0"]
    return run_all(
        registry(),
        _configs(args),
        weights=args.weights,
        debug=args.debug,
        descriptors=args.descriptors,
    )


def cmd_profile(args: argparse.Namespace) -> int:
    """Cost figures of each plugin."""
    from benchmark.profiling import profile_command

    return profile_command(args.plugins, args.format, args.device, args.variant)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render (or check) the leaderboard."""
    from benchmark.leaderboard import leaderboard_command

    return leaderboard_command(args.results_dir, args.output, args.check)


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


def cmd_datasets(args: argparse.Namespace) -> int:
    """Dataset tools."""
    from benchmark.data.check import check_command

    return check_command(args.dataset, args.data_root, args.split)


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "run": cmd_run,
    "eval": cmd_eval,
    "profile": cmd_profile,
    "leaderboard": cmd_leaderboard,
    "results": cmd_results,
    "datasets": cmd_datasets,
}


def main(argv: list[str] | None = None) -> int:
    """Parse ARGV, run the command, turn user errors into one clear message."""
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BenchmarkError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
