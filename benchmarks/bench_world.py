"""Synthetic world generation: time and peak memory against the number of pairs asked for.

    .venv/bin/python benchmarks/bench_world.py [--pairs 2000 8000 32000 100000] [--cache DIR]

Each size is generated from scratch in its own process (one torch thread) into an empty
cache folder (a temporary one unless --cache names a folder, where the worlds are kept
for later runs: ``CVGL_BENCHMARK_CACHE=DIR python -m benchmark run ...`` reuses them).
For each size it prints the maps the world was planned on, wall and CPU time, seconds of
CPU per 1,000 pairs and its ratio to the smallest size (1.0 = linear scaling), the
process's peak resident memory (and what importing torch and the harness took before
generation) and its ratio to the world's size on disk (< 1: the world never sits in
memory whole), and the load average around the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark.io import cpu_model

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from benchmark.data.synthetic import build_synthetic
options = json.loads(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
wall, cpu = time.perf_counter(), time.process_time()
bundle = build_synthetic(None, "test", options)
bundle.train.load_ground(bundle.train.num_ground - 1)
print(json.dumps({
    "wall_s": time.perf_counter() - wall,
    "cpu_s": time.process_time() - cpu,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "import_rss_mib": base,
    "world": bundle.info["world"],
}))
"""


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under FOLDER."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(pairs: int, n_test: int, cache: Path) -> dict:
    """Generate a world of PAIRS training pairs into CACHE in a fresh process; its figures."""
    before = set(cache.rglob("world-*"))
    env = {**os.environ, "CVGL_BENCHMARK_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    load = os.getloadavg()[0]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({"n_train": pairs, "n_test": n_test})],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (world,) = set(cache.rglob("world-*")) - before
    result.update(
        pairs=pairs,
        n_test=n_test,
        disk_mib=folder_bytes(world) / 2**20,
        load=(load, os.getloadavg()[0]),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Print one row per size and a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[2000, 8000, 32000, 100000])
    ap.add_argument("--n-test", type=int, default=500, help="test pairs of every world")
    ap.add_argument("--cache", type=Path, help="keep the worlds in this (new) folder")
    ap.add_argument("--json", type=Path, help="append each size's figures to this file")
    args = ap.parse_args(argv)
    print(
        f"CPU {cpu_model()}, {os.cpu_count()} logical; one torch thread per world; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-world-") as tmp:
        cache = args.cache or Path(tmp)
        if (cache / "synthetic").exists() and any((cache / "synthetic").iterdir()):
            print(f"{cache} already holds worlds; give an empty --cache folder.")
            return 2
        rows = []
        for pairs in sorted(args.pairs):
            row = measure(pairs, args.n_test, cache)
            rows.append(row)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            base = rows[0]["cpu_s"] / (rows[0]["pairs"] + args.n_test)
            per_pair = row["cpu_s"] / (pairs + args.n_test)
            world = row["world"]
            print(
                f"{pairs:>7,} pairs: {world['maps']} x {world['map_px']} px, "
                f"wall {row['wall_s']:.0f} s, cpu {row['cpu_s']:.0f} s "
                f"({1000 * per_pair:.1f} s per 1,000 pairs, x{per_pair / base:.2f} the "
                f"smallest), peak RSS {row['peak_rss_mib']:.0f} MiB "
                f"({row['import_rss_mib']:.0f} after imports) = "
                f"{row['peak_rss_mib'] / row['disk_mib']:.2f} x the world's "
                f"{row['disk_mib'] / 1024:.2f} GiB, load {row['load'][0]:.1f}-{row['load'][1]:.1f}",
                flush=True,
            )
            if args.cache is None:
                for world_dir in cache.rglob("world-*"):
                    shutil.rmtree(world_dir)
    print(
        "\n| pairs | maps | wall s | CPU s | s / 1k pairs | peak RSS MiB (imports) | world GiB "
        "| load |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        total = r["pairs"] + r["n_test"]
        print(
            f"| {r['pairs']:,} | {r['world']['maps']} x {r['world']['map_px']} px "
            f"| {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {1000 * r['cpu_s'] / total:.1f} "
            f"| {r['peak_rss_mib']:.0f} ({r['import_rss_mib']:.0f}) | {r['disk_mib'] / 1024:.2f} "
            f"| {r['load'][0]:.1f}-{r['load'][1]:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
