"""Per-run training logs: a JSON-lines and a CSV file beside the result, TensorBoard on request.

Every run that trains writes ``<result>.log.jsonl`` (one object per epoch, as the
``benchmark_on_epoch_end`` hook receives it) and ``<result>.log.csv`` (the same rows). A
resumed run keeps the epochs logged before its checkpoint and rewrites the rest, so the files
always hold one row per completed epoch. ``--log tensorboard`` also writes the scalars under
``<results-dir>/tensorboard/<result>``; other trackers (W&B, MLflow) are plugins implementing
the ``benchmark_on_epoch_end`` hook (see docs/PLUGINS.md).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError

TRACKERS = ("tensorboard",)


def check_trackers(names: list[str]) -> None:
    """Refuse unknown trackers and those whose package is not installed, before any work."""
    for name in names:
        if name not in TRACKERS:
            raise BenchmarkError(
                f"Unknown tracker {name!r}; the built-in one is tensorboard (the JSON-lines and "
                "CSV logs are always written). Other trackers are plugins: see docs/PLUGINS.md."
            )
        if importlib.util.find_spec(name) is None:
            raise BenchmarkError(
                f"--log {name} needs the {name} package, which is not installed: pip install {name}"
            )


class RunLog:
    """The training log of one run; call it with (epoch, logs) after each epoch."""

    def __init__(self, stem: Path, trackers: tuple[str, ...] = ()) -> None:
        self.jsonl = stem.with_name(stem.name + ".log.jsonl")
        self.csv = stem.with_name(stem.name + ".log.csv")
        self.rows = _read_rows(self.jsonl)
        self.writer = None
        if "tensorboard" in trackers:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(stem.parent / "tensorboard" / stem.name))

    def __call__(self, epoch: int, logs: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if r.get("epoch", 0) < epoch] + [dict(logs)]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        with self.csv.open("w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=columns)
            out.writeheader()
            out.writerows(self.rows)
        if self.writer is not None:
            for key, value in logs.items():
                if key != "epoch" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, epoch)
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer, if any."""
        if self.writer is not None:
            self.writer.close()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash: the epochs after it are logged again
    return rows
