"""`leaderboard --check` wall time of this checkout against an earlier commit, in one run.

    .venv/bin/python benchmarks/bench_leaderboard.py [--baseline REF] [--rounds 5]

Extracts REF (git archive) into a temporary folder and times, alternately, the command
`python -m benchmark leaderboard --check` in that copy and in this checkout, each on its own
committed results and page, each a fresh process (imports included, as CI runs it). Prints
the median wall time of each, the ratio, the load average before and after, and whether
torch was imported by the check (python -X importtime).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmark.io import cpu_model

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["-m", "benchmark", "leaderboard", "--check"]


def extract(ref: str, into: Path) -> Path:
    """The files of commit REF of this repository, under INTO."""
    archive = into / "baseline.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def wall(tree: Path) -> float:
    """Seconds of one `leaderboard --check` in TREE; it must pass."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *COMMAND], cwd=tree, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"leaderboard --check failed in {tree}:\n{done.stderr[-1500:]}")
    return seconds


def imports_torch(tree: Path) -> bool:
    """Whether `leaderboard --check` in TREE imports torch."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *COMMAND], cwd=tree, capture_output=True, text=True
    )
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())


def main(argv: list[str] | None = None) -> int:
    """Print the medians and the ratio baseline / this checkout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="HEAD~1", help="git ref to compare with")
    ap.add_argument("--rounds", type=int, default=5, help="alternating timings of each")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(args.baseline, Path(tmp))
        load = os.getloadavg()
        times: dict[str, list[float]] = {"baseline": [], "this": []}
        for _ in range(args.rounds):
            times["baseline"].append(wall(base))
            times["this"].append(wall(ROOT))
        after = os.getloadavg()
        torch_in = {"baseline": imports_torch(base), "this": imports_torch(ROOT)}
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print(f"CPU {cpu_model()} x{os.cpu_count()}; OPENBLAS_CORETYPE={coretype}")
    print(f"load average before {load[0]:.2f} {load[1]:.2f}, after {after[0]:.2f} {after[1]:.2f}")
    for name, label in (("baseline", args.baseline), ("this", "this checkout")):
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(
            f"{label:>14}: median {statistics.median(times[name]):.2f} s ({runs}); "
            f"imports torch: {torch_in[name]}"
        )
    ratio = statistics.median(times["baseline"]) / statistics.median(times["this"])
    print(f"ratio baseline / this checkout: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
