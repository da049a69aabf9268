"""SAIG (Zhu, Yang, Lu, Huang, 2023) as a benchmark plugin, with InfoNCE and semi-triplet losses."""

from __future__ import annotations

from benchmark.api import LossSpec, ModelCard, ModelSpec, Recipe, hookimpl
from plugins.saig.losses import LOSSES, InfoNCE, SemiTriplet, info_nce, semi_triplet
from plugins.saig.model import SAIG, SMD, AttentionBlock, SAIGOptions

__all__ = [
    "SAIG",
    "SMD",
    "AttentionBlock",
    "SAIGOptions",
    "InfoNCE",
    "SemiTriplet",
    "info_nce",
    "semi_triplet",
    "SPEC",
]

CARD = ModelCard(
    title="Simple Attention-based Image Geo-localization network (SAIG)",
    authors="Zhu, Yang, Lu, Huang",
    venue="arXiv 2302.01572, 2023",
    url="https://arxiv.org/abs/2302.01572",
    summary=(
        "Unshared per view: a 6-conv BN/ReLU stem (stride 16) and 1x1 projection to 384, "
        "learnable position embedding (no CLS token), a narrow-deep stack of attention-only "
        "blocks (x + MHSA(LN(x)), 12 heads of 32, no MLP) and a final LayerNorm, then the "
        "SMD head (token-mixing MLP N -> 4N -> N -> 8 per channel, 3,072-d) or GAP (384-d). "
        "Default (paper) configuration: SAIG-D (22 blocks) + SMD, aerial non-polar 256x256, "
        "ground 128x512, weighted soft-margin triplet loss, ASAM (rho 2.0)."
    ),
    reported={
        "cvusa": {"R@1": 96.08},
        "cvact/val": {"R@1": 89.21},
        "vigor/same-area": {"R@1": 65.23},
        "vigor/cross-area": {"R@1": 33.05},
    },
    reported_cost={
        "params_m": 32.3,
        "gflops_reported": None,
        "gmacs_computed": 13.24,
        "input": "ground 128x512, aerial 256x256",
        "source": (
            "the paper prints no FLOPs; 32.3 M (SAIG-D + SMD; SAIG-S + SMD about 19.3 M) and "
            "2 x 6.62 GMAC (backbones only, attention matmuls included; SAIG-S 2 x 4.41) are "
            "counted from the official architecture [computed]. The SMD heads add about 0.2 "
            "GMAC per branch: the harness counts 13.68 GMAC for the pair"
        ),
    },
    notes=(
        "Training protocol: the ASAM rows train in fp32 without clipping, as train_sam.py; the "
        "non-ASAM rows (train.py) use fp16 with a GradScaler and clipping at 1.0: --set "
        "sam_rho=null --set precision=fp16 --set grad_clip=1.0 on CUDA. The joint circular "
        "shift of ground and polar aerial applies to polar inputs on CVUSA only (the CVACT "
        "loader has aug=False). The code keeps the best epoch by R@1 on test; here the best "
        "epoch on a 5% validation split is evaluated.",
        "Reported R@1 are the README's SAIG-D/SMD/ASAM rows. The README does not say polar "
        "or non-polar; they are taken as non-polar [inference] because the repo's test "
        "script evaluates the CVACT model with aerial 256x256 and polar off.",
        "Other README rows (R@1): CVUSA S/GAP 88.82, S/GAP/ASAM 92.69, S/SMD 91.77, "
        "S/SMD/ASAM 95.37, D/GAP 90.29, D/GAP/ASAM 93.97, D/SMD 92.71; CVACT S/GAP 81.39, "
        "85.39, S/SMD 83.54, 88.44, D/GAP 82.40, 86.65, D/SMD 84.42. Polar SAIG-D: CVUSA "
        "96.34/99.10/99.50/99.86, CVACT_val 89.06/96.11/97.08/98.89 (third-party table).",
        "The VIGOR rows use the semi-triplet loss (--set loss=semi-triplet) and inputs "
        "320x640 ground / 320x320 aerial; InfoNCE gives 62.92 / 32.77, the triplet 61.27 / "
        "27.61 (README).",
        "ASAM is on in the paper recipe (sam_rho 2.0: two forward/backward passes per step, "
        "about twice the training cost); --set sam_rho=null gives the non-ASAM rows.",
        "SMD's first layer is sized by the token count, so a model is tied to its input "
        "sizes; changing model.ground_size or model.aerial_size builds a new head.",
        "Variants: 'shallow' = SAIG-S (11 blocks), 'gap' = GAP head, 'polar' = polar aerial "
        "128x512.",
        "Initialisation: the paper configuration starts from the authors' ImageNet-1k SAIG-D "
        "weights (SAIG-S for 'shallow'), which timm's hub does not hold: download SAIG_D.pth.tar "
        "from the README of https://github.com/yanghongji2007/SAIG and pass --pretrained FILE. "
        "The file is read as published (a timm training checkpoint; keys patch_embed.conv_stem.*, "
        "blocks.*.norm1 mapped, classifier dropped) and its 14x14 position embedding is resized "
        "as train.py does: bicubic F.interpolate, align_corners=False, no antialiasing (timm's "
        "resample_abs_pos_embed antialiases by default). --set model.pretrained=false trains "
        "from scratch and the result says so.",
        "Published models: `eval --plugins saig --weights model_checkpoint.pth` reads the "
        "README's trained models as train.py / train_sam.py save them ({'model': ...}, keys "
        "model_grd.backbone.*, model_grd.linear1-3 for SMD), mapping every tensor; choose the "
        "variant of the row (paper = SAIG-D + SMD; shallow, gap, shallow-gap). The CVUSA and "
        "CVACT models are non-polar 256x256 aerial (train.sh, train_sam.sh: --polar 0).",
        "The tiny variant (quick protocol) is a narrow stem and 4 attention-only blocks of "
        "96 channels (3 heads of 32) with SMD, trained from scratch.",
    ),
)

SPEC = ModelSpec(
    name="saig",
    options=SAIGOptions,
    build=SAIG,
    recipe=Recipe(
        optimizer="adamw",
        lr=1e-4,
        weight_decay=0.03,
        batch_size=32,
        epochs=200,
        schedule="cosine",
        warmup_steps=0,
        sam_rho=2.0,
        selection="best",
        augment=["circular-shift"],
        datasets={"cvact": {"augment": []}},
    ),
    card=CARD,
    variants={
        "paper": {},
        "shallow": {"depth": 11},
        "gap": {"head": "gap"},
        "shallow-gap": {"depth": 11, "head": "gap"},
        "polar": {"polar": True, "aerial_size": (128, 512)},
        "tiny": {
            "depth": 4,
            "embed_dim": 96,
            "num_heads": 3,
            "stem_channels": (16, 32, 32, 64, 64, 128),
            "pretrained": False,
        },
    },
    # lr and warm-up: what the leaderboard's equal tuning search chose on validation
    quick={
        "model": {"ground_size": (32, 128), "aerial_size": (64, 64)},
        "lr": 0.003,
        "warmup_epochs": 1.0,
    },
)


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Register SAIG."""
    return [SPEC]


@hookimpl
def benchmark_losses() -> list[LossSpec]:
    """Register InfoNCE and the semi-triplet loss for every model."""
    return list(LOSSES)
