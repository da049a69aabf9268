"""Within-tile refinement at evaluation: the offset a model predicts from its top-1 tile.

A model that sets ``predicts_offsets = True`` provides ``predict_offsets(ground, aerial)``
-> (B, 2) offsets of the panorama from the tile centre in half-tile units (east, north);
metre-level metrics then add them, in metres, to the top-1 tile centre. The offsets are
saved with the ranks (``<result>.retrieval.npz``) and with saved descriptors, so the
metrics can be recomputed, and descriptors scored again, with the same refinement.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from benchmark.data.base import CrossViewSplit
from benchmark.data.loader import ViewDataset
from benchmark.data.transforms import GroundProtocol, InputPipeline
from benchmark.descriptors import Descriptors
from benchmark.errors import BenchmarkError
from benchmark.model import CrossViewModel

Refiner = Callable[[np.ndarray], dict[str, np.ndarray]]  # top-1 tile ids -> Evaluation extras


def top1_offsets(
    model: CrossViewModel,
    split: CrossViewSplit,
    top1: np.ndarray,
    pipeline: InputPipeline,
    batch_size: int,
    device: torch.device,
    protocol: GroundProtocol | None = None,
) -> np.ndarray:
    """(n, 2) metres (east, north) the model places each query (seen through PROTOCOL) from
    its top-1 tile centre."""
    ground = ViewDataset(split, "ground", pipeline, protocol)
    aerial = ViewDataset(split, "aerial", pipeline)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, split.num_ground, batch_size):
            rows = range(start, min(split.num_ground, start + batch_size))
            g = ground.to_model(ground.__getitems__(rows), device)
            a = aerial.to_model(aerial.__getitems__(top1[rows.start : rows.stop]), device)
            with amp:
                out.append(model.predict_offsets(g, a).float().cpu())
    return torch.cat(out).numpy().astype(np.float64) * (split.aerial_tile_metres / 2)


def offset_refiner(
    model: CrossViewModel,
    split: CrossViewSplit,
    pipeline: InputPipeline,
    batch_size: int,
    device: torch.device,
    protocol: GroundProtocol | None = None,
) -> Refiner | None:
    """top1 -> {'offset': metres} when the model predicts offsets and SPLIT has them (ground
    images seen through PROTOCOL), else None."""
    if not model.predicts_offsets or split.offsets is None:
        return None
    if not split.aerial_tile_metres:
        return None

    def refine(top1: np.ndarray) -> dict[str, np.ndarray]:
        offsets = top1_offsets(model, split, top1, pipeline, batch_size, device, protocol)
        return {"offset": offsets}

    return refine


def saved_refiner(saved: Descriptors, split: CrossViewSplit) -> Refiner | None:
    """The refinement of the run that saved SAVED, for scoring them again without the model.

    Its offsets were predicted from each query's top-1 tile then, so they apply only where
    this retrieval ranks the same tile first; anywhere else the refined metre metrics cannot
    be recomputed, and the refiner refuses rather than silently drop or misplace them.
    """
    if saved.offset is None:
        if "offset_refinement" not in saved.meta and split.offsets is not None:
            raise BenchmarkError(
                "These descriptors were saved by an earlier version that did not record "
                "whether the model refined positions within tiles (VIGOR's offsets), so the "
                "metre metrics of their run cannot be reproduced from them; save them again "
                "with `run ... --save-descriptors`."
            )
        return None
    top1, offset = saved.top1, saved.offset

    def refine(now: np.ndarray) -> dict[str, np.ndarray]:
        changed = np.flatnonzero(now != top1)
        if len(changed):
            raise BenchmarkError(
                f"For {len(changed)} of {len(now)} queries (e.g. query {changed[0]}) this "
                "retrieval ranks a different tile first than the run that saved the "
                "descriptors did, and the model's offsets were predicted from that run's "
                "top-1 tiles only, so the refined metre metrics cannot be recomputed without "
                "the model. Score them with that run's retrieval settings and device, or "
                "evaluate the model itself (`eval --weights`)."
            )
        return {"offset": offset}

    return refine
