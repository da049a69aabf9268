"""R@1 against the number of training pairs, at the same budget of training samples.

    .venv/bin/python benchmarks/pairs_budget.py --out DIR [--pairs 2000 8000 32000]
        [--samples 32000] [--plugins safa,l2ltr] [--seed 0] [--report-only]
        [--world-json bench_world.jsonl] [--plot docs/synthetic_pairs.png]

For each size N, one quick-regime run of the plugins on the synthetic world with
``n_train=N`` and SAMPLES / N epochs (every size sees the same number of samples and
optimizer steps), results in DIR/nN/. Then prints a markdown table (with generation time
and memory joined from benchmarks/bench_world.py's --json output when given) and plots
R@1 against pairs, one line per plugin and budget. --report-only skips the runs and
reads every DIR given (e.g. the folders of two budgets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.plots import Curve, curve_plot  # noqa: E402


def run(n: int, epochs: int, out: Path, args: argparse.Namespace) -> None:
    """One `benchmark run` of every plugin with N training pairs for EPOCHS epochs."""
    subprocess.run(
        [sys.executable, "-m", "benchmark", "run", "--plugins", args.plugins,
         "--dataset", "synthetic", "--regime", "quick", "--device", "cpu",
         "--epochs", str(epochs), "--seed", str(args.seed), "--set", "profile=false",
         "--set", f"dataset_options.n_train={n}", "--results-dir", str(out / f"n{n}")],
        cwd=ROOT,
        check=False,
    )  # fmt: skip


def results(folder: Path) -> dict[str, dict]:
    """Plugin -> result of the runs in FOLDER."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "ok" and record.get("protocol", "aligned") == "aligned":
            out[record["plugin"]] = record
    return out


def main(argv: list[str] | None = None) -> int:
    """Run (unless --report-only), then print the table and write the plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, nargs="+", required=True, help="runs (first) and reports")
    ap.add_argument("--pairs", type=int, nargs="+", default=[2000, 8000, 32000])
    ap.add_argument("--samples", type=int, default=32000, help="training samples per run")
    ap.add_argument("--plugins", default="safa,l2ltr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--world-json", type=Path, help="bench_world.py --json output to join")
    ap.add_argument("--plot", type=Path, help="write R@1 against pairs here (PNG)")
    args = ap.parse_args(argv)
    plugins = args.plugins.split(",")
    if not args.report_only:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        for n in args.pairs:
            run(n, max(1, args.samples // n), args.out[0], args)
    worlds = {}
    if args.world_json and args.world_json.exists():
        for line in args.world_json.read_text().splitlines():
            row = json.loads(line)
            worlds[row["pairs"]] = row
    head = "| pairs | epochs | samples | steps | maps | generation CPU s | peak RSS MiB |"
    print(head + "".join(f" {p} R@1 | {p} R@10 |" for p in plugins))
    print("|---" * (7 + 2 * len(plugins)) + "|")
    curves: dict[str, list[tuple[int, float]]] = {}
    for folder in args.out:
        for n in args.pairs:
            found = results(folder / f"n{n}")
            if not found:
                continue
            config = next(iter(found.values()))["config"]
            epochs, samples = config["epochs"], config["epochs"] * n
            plan = next(iter(found.values()))["dataset_info"].get("world", {})
            world = worlds.get(n, {})
            cells = [
                f"{n:,}",
                str(epochs),
                f"{samples:,}",
                f"{epochs * (n // config['batch_size']):,}",
                f"{plan.get('maps', '?')} x {plan.get('map_px', '?')} px",
                f"{world['cpu_s']:.0f}" if world else "-",
                f"{world['peak_rss_mib']:.0f}" if world else "-",
            ]
            for p in plugins:
                if p not in found:
                    cells += ["-", "-"]
                    continue
                metrics = found[p]["metrics"]
                cells += [f"{metrics['R@1']:.1f}", f"{metrics['R@10']:.1f}"]
                label = f"{p}, {samples / 1000:.0f}k samples"
                curves.setdefault(label, []).append((n, metrics["R@1"]))
            print("| " + " | ".join(cells) + " |")
    if args.plot:
        curve_plot(
            [
                Curve(label, tuple(x for x, _ in c), tuple(y for _, y in c), (0.0,) * len(c))
                for label, c in curves.items()
            ],
            args.plot,
            "R@1 against training pairs at fixed budgets (quick regime, seed 0)",
            "training pairs",
            "R@1 (%)",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
