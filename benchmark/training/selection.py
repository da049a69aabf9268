"""Choosing the epoch to keep: validation R@1 after every epoch, and the best epoch's
weights kept as ``best-epoch-E.safetensors`` beside the checkpoints (the test split is
never used to choose)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_model

from benchmark import checkpoint
from benchmark.config import RunConfig
from benchmark.data.base import CrossViewSplit
from benchmark.data.transforms import InputPipeline
from benchmark.evaluate import extract
from benchmark.model import CrossViewModel
from benchmark.results import VAL_KEY
from benchmark.retrieval import search_torch

BEST = re.compile(r"best-epoch-(\d+)\.safetensors")


def validation_r1(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    device: torch.device,
) -> float:
    """R@1 (percent) of SPLIT's panoramas against SPLIT's gallery, extracted as evaluation
    does; the global RNG stream of training is left untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        bs, workers = cfg.eval_batch_size, cfg.workers
        ground = extract(model, split, "ground", pipeline, bs, workers, device)
        aerial = extract(model, split, "aerial", pipeline, bs, workers, device)
    positives = torch.as_tensor(split.positives)
    found = search_torch(ground, aerial, positives, 1, cfg.eval_memory_mb * 2**20)
    return float((found.ranks < 1).mean() * 100.0)


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch with the highest validation R@1 (the earliest on ties), None before any."""
    scored = [(h[VAL_KEY], -int(h["epoch"])) for h in history if VAL_KEY in h]
    return -max(scored)[1] if scored else None


def best_weights(ckpt_dir: Path, epoch: int) -> Path:
    """Where the weights of EPOCH are kept when it is the best one."""
    return ckpt_dir / f"best-epoch-{epoch:05d}.safetensors"


def save_best(ckpt_dir: Path, epoch: int, model: torch.nn.Module) -> None:
    """Write MODEL's weights as the best of EPOCH, atomically."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = best_weights(ckpt_dir, epoch)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        save_model(model, str(tmp))
        os.replace(tmp, final)
    except checkpoint.WRITE_ERRORS as exc:
        tmp.unlink(missing_ok=True)
        raise checkpoint.write_failure(ckpt_dir, final, exc) from exc


def prune_best(ckpt_dir: Path, keep: int | None) -> None:
    """Delete every best-epoch file but KEEP's (all of them when KEEP is None)."""
    for path in ckpt_dir.glob("best-epoch-*.safetensors"):
        match = BEST.fullmatch(path.name)
        if match is None or int(match[1]) != keep:
            path.unlink(missing_ok=True)
