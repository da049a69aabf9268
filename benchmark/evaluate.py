"""Evaluation: batched descriptor extraction, retrieval, then every applicable metric."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from benchmark import distributed, faults
from benchmark.config import RunConfig
from benchmark.data.base import CrossViewSplit
from benchmark.data.loader import ViewDataset, make_loader
from benchmark.data.transforms import GroundProtocol, InputPipeline
from benchmark.descriptors import check_compatible, load_descriptors
from benchmark.metrics import Evaluation, one_percent_k
from benchmark.model import CrossViewModel
from benchmark.refine import Refiner, offset_refiner, saved_refiner
from benchmark.retrieval import Retrieval, search
from benchmark.specs import MetricSpec


@dataclass
class EvalReport:
    """Metrics, the Evaluation they came from, and timing."""

    metrics: dict[str, Any]
    evaluation: Evaluation
    seconds: float
    backend: str
    retrieval: Retrieval
    descriptors: tuple[torch.Tensor, torch.Tensor] | None = None


def extract(
    model: CrossViewModel,
    split: CrossViewSplit,
    view: str,
    pipeline: InputPipeline,
    batch_size: int,
    workers: int | str,
    device: torch.device,
    protocol: GroundProtocol | None = None,
) -> torch.Tensor:
    """(N, D) float32 descriptors of every image of VIEW (ground ones seen through PROTOCOL),
    in index order. Under torchrun each rank extracts a contiguous shard and every rank
    receives all N rows."""
    world = distributed.current()
    images = ViewDataset(split, view, pipeline, protocol)
    part = distributed.shard(len(images), world)
    loader = make_loader(Subset(images, part), batch_size, workers, device)
    embed = model.embed_ground if view == "ground" else model.embed_aerial
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    out = []
    model.eval()
    with torch.inference_mode():
        for batch in distributed.progress(loader, desc=f"extract {view}", leave=False):
            x = images.to_model(batch, device)
            with amp:
                out.append(embed(x).float())
    faults.point("evaluate")
    mine = torch.cat(out) if out else torch.empty(0, model.descriptor_dim, device=device)
    return distributed.gather_shards(mine, len(images), world)


def ground_protocol(cfg: RunConfig, pipeline: InputPipeline) -> GroundProtocol:
    """The run's evaluation protocol; FOV padding uses the model's mean colour."""
    fill = tuple(round(255 * m) for m in pipeline.pre.mean)
    return GroundProtocol(cfg.protocol, cfg.protocol_seed, fill)


def extract_test(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground descriptors (images seen through the run's protocol) and aerial descriptors."""
    model.to(device)
    protocol = ground_protocol(cfg, pipeline)
    bs, workers = cfg.eval_batch_size, cfg.workers
    ground = extract(model, split, "ground", pipeline, bs, workers, device, protocol)
    aerial = extract(model, split, "aerial", pipeline, bs, workers, device)
    return ground, aerial


def score(
    ground: torch.Tensor,
    aerial: torch.Tensor,
    split: CrossViewSplit,
    cfg: RunConfig,
    metrics: list[MetricSpec],
    refine: Refiner | None = None,
) -> EvalReport:
    """Retrieve for every ground query within cfg.eval_memory_mb; compute applicable metrics."""
    t0 = time.perf_counter()
    found = search(
        ground,
        aerial,
        split.positives,
        cfg.topk,
        one_percent_k(split.num_aerial),
        cfg.retrieval,
        memory_bytes=cfg.eval_memory_mb * 2**20,
    )
    ev = Evaluation(found.ranks, found.topk, found.topk_scores, split)
    if refine is not None:  # within-tile offsets from the top-1 tile (VIGOR)
        ev.extras.update(refine(found.topk[:, 0]))
    values: dict[str, Any] = {}
    for metric in metrics:
        if metric.applies(ev):
            values.update(metric.compute(ev))
    if found.rank_cap is not None:
        values["rank_cap"] = found.rank_cap
    return EvalReport(values, ev, time.perf_counter() - t0, found.backend, found)


def evaluate(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    cfg: RunConfig,
    device: torch.device,
    metrics: list[MetricSpec],
) -> EvalReport | None:
    """Extract both views, retrieve for every ground query, compute applicable metrics.

    Under torchrun all ranks extract and rank 0 alone scores; the others get None.
    """
    t0 = time.perf_counter()
    ground, aerial = extract_test(model, split, pipeline, cfg, device)
    if not distributed.current().is_main:
        return None
    protocol = ground_protocol(cfg, pipeline)
    refine = offset_refiner(model, split, pipeline, cfg.eval_batch_size, device, protocol)
    report = score(ground, aerial, split, cfg, metrics, refine)
    report.seconds = time.perf_counter() - t0
    report.descriptors = (ground, aerial)
    return report


def evaluate_saved(
    path: Path,
    split: CrossViewSplit,
    cfg: RunConfig,
    device: torch.device,
    metrics: list[MetricSpec],
) -> tuple[EvalReport, dict[str, Any]]:
    """Score descriptors saved by an earlier run on DEVICE (no model), with the offsets that
    run's model predicted (see refine.saved_refiner); also return their metadata."""
    saved = load_descriptors(path)
    check_compatible(saved, cfg.model_dump(mode="json"), split.num_ground, split.num_aerial)
    ground, aerial = saved.ground.to(device), saved.aerial.to(device)
    return score(ground, aerial, split, cfg, metrics, saved_refiner(saved, split)), saved.meta
