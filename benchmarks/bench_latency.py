"""Check the harness's latency figure against a bare timing loop of the same model.

    python benchmarks/bench_latency.py [--plugin safa] [--variant tiny] [--device cpu]
                                       [--rounds 3] [--threads N]

Both measure one ground+aerial pair at batch 1 in the same process; the bare loop times
ITERS back-to-back forwards with one clock read (and one CUDA sync) at each end. The two
alternate for ROUNDS rounds; the median of the per-round ratios is reported, so drift in
machine load between rounds cancels out. Exit code 0 when harness / bare is within 10% of 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from benchmark.model import CrossViewModel
from benchmark.profiling.counting import variant_options
from benchmark.profiling.measuring import profile_model
from benchmark.registry import registry

TOLERANCE = 0.10


def bare_latency_ms(model: CrossViewModel, device: torch.device, warmup: int, iters: int) -> float:
    """Mean milliseconds per pair of ITERS back-to-back batch-1 forwards."""
    pre = model.preprocess
    ground = torch.randn(1, 3, *pre.ground_size, device=device)
    aerial = torch.randn(1, 3, *pre.aerial_size, device=device)
    model.to(device).eval()
    with torch.inference_mode():
        for _ in range(warmup):
            model(ground, aerial)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(ground, aerial)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters * 1e3


def main(argv: list[str] | None = None) -> int:
    """Print harness latency, bare latency and their ratio; 1 if outside the tolerance."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", default="safa")
    ap.add_argument("--variant", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = registry().model(args.plugin)
    model = spec.build(variant_options(spec, args.variant))
    device = torch.device(args.device)
    bare, harness, label = [], [], ""
    for _ in range(args.rounds):
        bare.append(bare_latency_ms(model, device, args.warmup, args.iters))
        profile = profile_model(model, device, batch_size=1, warmup=args.warmup, iters=args.iters)
        harness.append(profile["latency_ms"])
        label = profile["device"]
    ratio = statistics.median(h / b for h, b in zip(harness, bare, strict=True))
    print(
        f"{args.plugin} [{args.variant}] on {label}: harness "
        f"{', '.join(f'{h:.2f}' for h in harness)} ms, bare loop "
        f"{', '.join(f'{b:.2f}' for b in bare)} ms; median per-round ratio {ratio:.3f}"
    )
    ok = abs(ratio - 1) <= TOLERANCE
    print("OK: within 10%" if ok else "FAIL: the harness and the bare loop differ by more than 10%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
