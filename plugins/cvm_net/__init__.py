"""CVM-Net (Hu, Feng, Nguyen, Lee, CVPR 2018) as a benchmark plugin."""

from __future__ import annotations

from benchmark.api import ModelCard, ModelSpec, Recipe, hookimpl
from plugins.cvm_net.model import CVMNet, CVMNetOptions

__all__ = ["CVMNet", "CVMNetOptions", "SPEC"]

CARD = ModelCard(
    title="CVM-Net: Cross-View Matching Network for Image-Based Ground-to-Aerial Geo-Localization",
    authors="Sixing Hu, Mengdan Feng, Rang M. H. Nguyen, Gim Hee Lee",
    venue="CVPR 2018",
    url="https://openaccess.thecvf.com/content_cvpr_2018/html/"
    "Hu_CVM-Net_Cross-View_Matching_CVPR_2018_paper.html",
    summary=(
        "CVM-Net-I: unshared VGG16 (conv1_1..conv5_3, conv1-3 frozen, dropout 0.2 on conv4/5) "
        "per view, a NetVLAD with 64 clusters per view (32,768-d), one shared FC "
        "32,768 -> 4,096, L2-normalised 4,096-d descriptor; no polar transform; weighted "
        "soft-margin triplet loss (alpha 10) over all in-batch negatives. CVM-Net-II (variant "
        "'cvm-net-ii') shares a transformation net and one NetVLAD instead. Paper "
        "configuration = the official code's inputs: 224x1232 ground panoramas, aerial tiles "
        "resized to 512x512."
    ),
    reported={
        "cvusa": {"R@1": 22.53, "R@5": 50.01, "R@10": 63.19, "R@1%": 93.52},
        "cvact/val": {"R@1": 20.15, "R@5": 45.00, "R@10": 56.87, "R@1%": 87.57},
    },
    reported_cost={
        "params_m": 163.8,
        "params_is_computed": True,
        "gflops_reported": None,
        "input": "224x1232 ground + 512x512 aerial",
        "source": (
            "The CVM-Net paper reports neither parameters nor FLOPs. 163.8 M is counted from "
            "the official architecture: 2 x VGG16 conv (14.715 M) + 2 x NetVLAD (65,600) + "
            "shared FC (134.22 M); about 165 GMAC per pair at the official sizes (also counted)."
        ),
    },
    notes=(
        "Reported R@k are re-measurements by later work, cited in the AENet paper (Tables 3-4). "
        "The CVM-Net paper itself gives only CVUSA R@1% 91.4 (CVM-Net-II: 87.2); Liu & Li "
        "(CVPR 2019) re-measured CVUSA 18.80 / 44.42 / 57.47 / 91.54.",
        "Paper configuration = the official code (https://github.com/david-husx/"
        "crossview_localisation, src/CVM-Net/input_data.py): ground panoramas at their stored "
        "224x1232, aerial tiles resized to 512x512. Variant '128x512' is the former default "
        "here: 128x512 ground and a 256x256 aerial tile (the non-polar size of SAFA's ablation).",
        "Training augmentation follows the official loader (input_data.py): a centred random "
        "crop of the aerial image (236 of 748 px) resized back, and a rotation by k x 90 "
        "degrees (k drawn from 0..4), off at evaluation. The official code keeps every epoch "
        "and logs R@1% on test; here the best epoch by R@1 on a 5% validation split is "
        "evaluated (selection=best), never one chosen on test.",
        "Initialisation: the official model starts from an 'init' checkpoint whose VGG16 part "
        "is 'initialised by the online model' (README), with BGR input minus (103.939, "
        "116.779, 123.6) and no std scaling (input_data.py): a Caffe-converted ImageNet VGG16 "
        "[inference]. --pretrained vgg16.npy starts from such weights (the input switched to "
        "BGR with those means); the default (pretrained=true) takes timm's vgg16.tv_in1k "
        "(torchvision) weights with RGB input and ImageNet mean/std.",
        "conv1-3 are not trainable in the official VGG16 (VGG.py); here they are frozen only "
        "when the model starts from pretrained weights. From scratch (--set "
        "model.pretrained=false) every layer trains and the result says 'from scratch'.",
        "CVM-Net-II: padding of the shared 3x3 conv is 'same' [inference]; its 4,096-d "
        "projection is L2-normalised here (the official code leaves it unnormalised although "
        "the loss assumes unit vectors).",
        "Recipe: Adam lr 1e-5 constant, batch 12 (official code). The epoch count is not stated "
        "(the code resumes 5-epoch runs for about 3 days); 100 epochs is [inference].",
        "The tiny variant (quick protocol) keeps per-view NetVLAD + shared FC but uses a "
        "4-stage VGG with BatchNorm (16-32-64-128 channels), 16 clusters and a 2,048 -> 512 "
        "FC, nothing frozen, trained from scratch.",
    ),
)

SPEC = ModelSpec(
    name="cvm-net",
    options=CVMNetOptions,
    build=CVMNet,
    recipe=Recipe(
        optimizer="adam",
        lr=1e-5,
        batch_size=12,
        epochs=100,
        schedule="constant",
        selection="best",
        augment=["aerial-crop-rotate"],
    ),
    card=CARD,
    variants={
        "paper": {},
        "128x512": {"ground_size": (128, 512), "aerial_size": (256, 256)},
        "cvm-net-ii": {"version": "II"},
        "tiny": {
            "backbone": "tiny",
            "clusters": 16,
            "fc_dim": 512,
            "frozen_stages": 0,
            "pretrained": False,
        },
    },
    # lr and warm-up: what the leaderboard's equal tuning search chose on validation
    quick={
        "model": {"ground_size": (32, 128), "aerial_size": (64, 64)},
        "lr": 0.001,
        "warmup_epochs": 1.0,
    },
)


@hookimpl
def benchmark_models() -> list[ModelSpec]:
    """Register CVM-Net."""
    return [SPEC]
