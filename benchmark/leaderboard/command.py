"""``python -m benchmark leaderboard``: write the page and its figures, or check them."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.io import atomic_write
from benchmark.leaderboard.figures import write_plots
from benchmark.leaderboard.page import render


def leaderboard_command(results_dir: Path, output: Path, check: bool) -> int:
    """Write OUTPUT (and its plots) from RESULTS_DIR, or with CHECK say whether it is current
    and every result file was accepted (exit code 1 otherwise)."""
    text, plots, warnings = render(results_dir, output.parent)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(
                f"{output} is out of date with the result files in {results_dir}; run "
                f"`python -m benchmark leaderboard --results-dir {results_dir} --output {output}` "
                "and commit the page and its plots.",
                file=sys.stderr,
            )
            return 1
        if warnings:
            print(
                f"{len(warnings)} file(s) in {results_dir} were not accepted (see the warnings "
                "above): fix or remove them.",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date.")
        return 0
    with atomic_write(output, "w") as fh:
        fh.write(text)
    write_plots(plots, output.parent)
    print(f"wrote {output} and {len(plots)} plots")
    return 0
