"""Evaluation: batched descriptor extraction, retrieval, then every applicable metric."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from benchmark import faults
from benchmark.config import RunConfig
from benchmark.data.base import CrossViewSplit
from benchmark.data.loader import ViewDataset, make_loader
from benchmark.data.transforms import InputPipeline
from benchmark.metrics import Evaluation, one_percent_k
from benchmark.model import CrossViewModel
from benchmark.refine import offset_refiner
from benchmark.retrieval import search
from benchmark.specs import MetricSpec


@dataclass
class EvalReport:
    """Metrics, the Evaluation they came from, and timing."""

    metrics: dict[str, Any]
    evaluation: Evaluation
    seconds: float
    backend: str


def extract(
    model: CrossViewModel,
    split: CrossViewSplit,
    view: str,
    pipeline: InputPipeline,
    batch_size: int,
    workers: int,
    device: torch.device,
) -> torch.Tensor:
    """(N, D) float32 descriptors of every image of VIEW, in index order."""
    loader = make_loader(ViewDataset(split, view, pipeline), batch_size, workers, device)
    embed = model.embed_ground if view == "ground" else model.embed_aerial
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    out = []
    model.eval()
    with torch.inference_mode(), amp:
        for x in tqdm(loader, desc=f"extract {view}", leave=False):
            out.append(embed(x.to(device, non_blocking=True)).float())
    faults.point("evaluate")
    return torch.cat(out)


def evaluate(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    device: torch.device,
    metrics: list[MetricSpec],
) -> EvalReport:
    """Extract both views, retrieve for every ground query, compute applicable metrics."""
    t0 = time.perf_counter()
    model.to(device)
    ground = extract(model, split, "ground", pipeline, cfg.eval_batch_size, cfg.workers, device)
    aerial = extract(model, split, "aerial", pipeline, cfg.eval_batch_size, cfg.workers, device)
    found = search(
        ground, aerial, split.positives, cfg.topk, one_percent_k(split.num_aerial), cfg.retrieval
    )
    ev = Evaluation(found.ranks, found.topk, found.topk_scores, split)
    refine = offset_refiner(model, split, pipeline, cfg.eval_batch_size, device)
    if refine is not None:  # within-tile offsets from the top-1 tile (VIGOR)
        ev.extras.update(refine(found.topk[:, 0]))
    values: dict[str, Any] = {}
    for metric in metrics:
        if metric.applies(ev):
            values.update(metric.compute(ev))
    if found.rank_cap is not None:
        values["rank_cap"] = found.rank_cap
    return EvalReport(values, ev, time.perf_counter() - t0, found.backend)
