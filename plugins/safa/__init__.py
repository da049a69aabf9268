"""SAFA (Shi, Liu, Yu, Li, NeurIPS 2019) as a benchmark plugin."""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.specs import ModelCard, ModelSpec, Recipe
from plugins.safa.model import SAFA, SAFAOptions, SpatialAwareAggregation

__all__ = ["SAFA", "SAFAOptions", "SpatialAwareAggregation", "SPEC"]

CARD = ModelCard(
    title="Spatial-Aware Feature Aggregation for Cross-View Image Based Geo-Localization",
    authors="Yujiao Shi, Liu Liu, Xin Yu, Hongdong Li",
    venue="NeurIPS 2019",
    url="https://papers.nips.cc/paper/2019/hash/ba2f0015122a5955f8b3a50240fb91b2-Abstract.html",
    summary=(
        "Unshared VGG16 (conv1_1..conv5_3, dropout 0.2 on conv4/5) per view, an extra 2x2 "
        "max-pool, 8 spatial-aware position-embedding heads (linear P->P/2->P MLPs) that "
        "weight and sum the feature map; 4,096-d descriptor; polar-transformed aerial; "
        "weighted soft-margin triplet loss (alpha 10). Official inputs 112x616; the harness "
        "default is the shared 128x512 (DSM/L2LTR/SAIG/AENet convention)."
    ),
    reported={
        "cvusa": {"R@1": 89.84, "R@5": 96.93, "R@10": 98.14, "R@1%": 99.64},
        "cvact/val": {"R@1": 81.03, "R@5": 92.80, "R@10": 94.84, "R@1%": 98.17},
        "cvact/test": {"R@1": 55.50, "R@5": 79.94, "R@10": 85.08, "R@1%": 94.49},
    },
    reported_cost={
        "params_m": 29.5,
        "gflops_reported": 42.24,
        "gflops_is_macs": True,
        "input": "112x616 both views",
        "variant": "official",
        "source": "TransGeo comparison table (42.24 'GFLOPs' = GMACs); AENet Tab. 7 lists 15.64",
    },
    notes=(
        "Channel pooling: the official code averages over channels; the paper and the VIGOR "
        "re-implementation take the max. Default here: max; `--set model.channel_pool=mean` "
        "gives the official code's choice.",
        "The CVACT test numbers are recalled from DSM/L2LTR tables, not re-verified.",
        "Paper preprocessing is BGR with Caffe mean subtraction, matching the Caffe VGG16 "
        "weights it started from; the harness loads timm's (torchvision) VGG16 weights, which "
        "expect RGB with ImageNet mean/std, so it normalises that way. The tiny variant trains "
        "from scratch with BatchNorm.",
        "TF 'same' pooling rounds up; every pool here uses ceil_mode=True to match "
        "(112x616 -> 7x39 -> 4x20).",
    ),
)

SPEC = ModelSpec(
    name="safa",
    options=SAFAOptions,
    build=SAFA,
    recipe=Recipe(
        optimizer="adam",
        lr=1e-5,
        batch_size=32,
        epochs=100,
        schedule="constant",
        selection="best",
        datasets={"cvact": {"loss_options": {"min_negative_distance_m": 25.0}}},
    ),
    card=CARD,
    variants={
        "paper": {},
        "official": {"ground_size": (112, 616), "aerial_size": (112, 616), "channel_pool": "mean"},
        "nonpolar": {"polar": False, "aerial_size": (256, 256)},
        "tiny": {"backbone": "tiny"},
    },
    quick={"model": {"ground_size": (32, 128), "aerial_size": (32, 128)}},
)


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Register SAFA."""
    return [SPEC]
