"""AENet (Xu, Zhu, Qi, Li, Yang, Electronic Research Archive 2023) as a benchmark plugin.

Registers the model and two losses: ``mhnw`` (the paper's) and ``soft-margin-batch-hard``
(its ablation); both work with any model (``--set loss=mhnw``).
"""

from __future__ import annotations

from benchmark.api import LossSpec, ModelCard, ModelSpec, Recipe, hookimpl
from plugins.aenet.loss import LOSSES, BatchHardSoftMargin, MHNWLoss, mhnw_from_distances
from plugins.aenet.model import AENet, AENetOptions

__all__ = [
    "AENet",
    "AENetOptions",
    "BatchHardSoftMargin",
    "MHNWLoss",
    "SPEC",
    "mhnw_from_distances",
]

CARD = ModelCard(
    title="AENet: attention efficient network for cross-view image geo-localization",
    authors="Jingqian Xu, Ma Zhu, Baojun Qi, Jiangshan Li, Chunfang Yang",
    venue="Electronic Research Archive 31(7): 4119-4138, 2023",
    url="https://doi.org/10.3934/era.2023210",
    summary=(
        "Two unshared ImageNet EfficientNetV2-S backbones (timm tf_efficientnetv2_s, final "
        "1280-channel conv, 1280x4x16 at 128x512), Triplet Attention after each, polar "
        "aerial, 128x512 inputs, no projection. Descriptor: the flattened 81,920-d map by "
        "default, 1,280-d global average pooling as a switch (model.descriptor=gap). Loss: "
        "MHNW (weighted soft-margin over every hard negative, batch-hardest fallback). "
        "Ablations as variants: backbone-only, bam, cbam; loss=soft-margin-batch-hard."
    ),
    reported={
        "cvusa": {"R@1": 95.97, "R@5": 98.80, "R@10": 99.11, "R@1%": 99.84},
        "cvact/val": {"R@1": 91.78, "R@5": 96.28, "R@10": 97.29, "R@1%": 99.29},
    },
    reported_cost={
        "params_m": 40.34,
        "gflops_reported": 7.14,
        "gflops_is_macs": True,
        "input": "128x512 both views (the paper does not say which input it measured)",
        "source": (
            "AENet Table 7. 2 x EfficientNetV2-S counts 40.36 M and 7.10 GMAC (ptflops), so "
            "the reported GFLOPs are read as GMACs [inference]."
        ),
    },
    notes=(
        "Ablations, CVUSA R@1/R@5/R@10/R@1% | CVACT_val (Tables 5-6): backbone-only 94.06/"
        "98.21/98.85/99.80 | 91.14/96.06/97.02/99.11; bam 89.80/96.58/97.90/99.52 | 82.21/"
        "91.90/94.12/98.01; cbam 90.89/96.93/98.05/99.53 | 83.13/92.19/94.24/98.21; "
        "loss=soft-margin-batch-hard 95.56/98.66/99.06/99.83 | 91.69/96.09/97.26/99.18.",
        "Only the paper text is available (no public code); everything below marked "
        "[inference] is our reconstruction.",
        "Backbone: the paper says EfficientNetV2 with a 1280x4x16 output and 40.34 M "
        "parameters, which only two unshared EfficientNetV2-S fit [inference from counts].",
        "Descriptor [inference]: the paper names the averaged Triplet-Attention output the "
        "descriptor and has no parameter budget for a projection. Default 'flatten' (81,920-d "
        "at 128x512) is the literal reading; 'gap' (1,280-d) is the usual EfficientNet head.",
        "MHNW [inference]: d = 2 - 2 cos (the paper says Euclidean distance); weights are "
        "constants; alpha = 10 (not printed); per-anchor mean over its hard negatives then mean "
        "over anchors (loss_options.reduction=pooled divides by the batch's total number of "
        "terms, Eq. 3.3 read literally); ground anchors only (loss_options.symmetric=true adds "
        "the aerial direction).",
        "Normalisation is not stated [inference]: the backbone's own timm statistics "
        "(mean = std = 0.5 for tf_efficientnetv2_s).",
        "Initialisation: the paper says ImageNet-pretrained without naming the weights; the "
        "paper configuration takes timm's default tf_efficientnetv2_s weights "
        "(in21k_ft_in1k: ImageNet-21k pretrained, ImageNet-1k fine-tuned) [inference], from the "
        "hub or a local safetensors (--pretrained FILE). --set model.pretrained=false trains "
        "from scratch and the result says so.",
        "Epochs, schedule and augmentation are not stated [inference]: constant lr, no "
        "augmentation, 100 epochs.",
        "BAM and CBAM follow their papers (r = 16; BAM dilation 4) placed after the backbone, "
        "as the paper describes its ablation.",
        "The tiny variant (quick protocol) swaps in timm's test_efficientnet, a one-block-per-"
        "stage EfficientNetV2 layout (conv, two Fused-MBConv, two MBConv+SE stages; 256-channel "
        "head), keeping Triplet Attention and the flattened descriptor; trained from scratch.",
    ),
)

SPEC = ModelSpec(
    name="aenet",
    options=AENetOptions,
    build=AENet,
    recipe=Recipe(
        optimizer="adamw",
        lr=1e-5,
        weight_decay=5e-5,
        batch_size=24,
        epochs=100,
        schedule="constant",
        loss="mhnw",
    ),
    card=CARD,
    variants={
        "paper": {},
        "backbone-only": {"attention": "none"},
        "bam": {"attention": "bam"},
        "cbam": {"attention": "cbam"},
        "gap": {"descriptor": "gap"},
        "tiny": {"backbone": "test_efficientnet", "pretrained": False},
    },
    # lr and warm-up: what the leaderboard's equal tuning search chose on validation
    quick={
        "model": {"ground_size": (32, 128), "aerial_size": (32, 128)},
        "lr": 0.003,
        "warmup_epochs": 0.0,
    },
)


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Register AENet."""
    return [SPEC]


@hookimpl
def benchmark_losses() -> list[LossSpec]:
    """Register MHNW and the batch-hard soft-margin loss."""
    return list(LOSSES)
