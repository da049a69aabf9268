"""`python -m benchmark list`: names declared in metadata against importing every package.

    .venv/bin/python benchmarks/bench_list.py [--runs 5]

Two installed copies of this checkout's metadata (no code), each first on PYTHONPATH:

  declared   the entry points pyproject.toml declares (names in cvgl_benchmark.methods, ...)
  imported   the same plugin entry points without the declarations: every package, and
             torch, is imported to learn its names (the behaviour before declarations)

Runs `list --format json` alternately in fresh processes, checks both print the same
names, and prints the median wall time of each, their ratio and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.plugin_sites import harness_entry_points, site_env, write_package  # noqa: E402


def seconds(env: dict[str, str], site: Path) -> tuple[float, str]:
    """Wall time of one `list --format json` in a fresh process, and what it printed."""
    start = time.perf_counter()
    out = subprocess.run(  # run from SITE: metadata left in ROOT by a build must not shadow it
        [sys.executable, "-m", "benchmark", "list", "--format", "json"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, out.stdout


def main(argv: list[str] | None = None) -> int:
    """Print the median wall time of each variant and the ratio; exit 1 if outputs differ."""
    from benchmark import __version__

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    groups = harness_entry_points()
    with tempfile.TemporaryDirectory() as tmp:
        sites = {"declared": Path(tmp, "declared"), "imported": Path(tmp, "imported")}
        write_package(sites["declared"], "cvgl-benchmark", __version__, groups)
        plugins_only = {"cvgl_benchmark": groups["cvgl_benchmark"]}
        write_package(sites["imported"], "cvgl-benchmark", __version__, plugins_only)
        allow = os.environ.get("CVGL_BENCHMARK_PLUGINS")
        envs = {name: site_env(site, allow) for name, site in sites.items()}
        times: dict[str, list[float]] = {name: [] for name in sites}
        printed: dict[str, set[str]] = {name: set() for name in sites}
        load = os.getloadavg()
        for _ in range(args.runs):
            for name, env in envs.items():
                took, out = seconds(env, sites[name])
                times[name].append(took)
                printed[name].add(out)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    for name, t in times.items():
        print(f"{name:9s} median {median[name]:.2f} s  ({', '.join(f'{x:.2f}' for x in t)})")
    print(f"imported / declared: {median['imported'] / median['declared']:.1f}x")
    if len(printed["declared"] | printed["imported"]) != 1:
        print("the two variants printed different names", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
