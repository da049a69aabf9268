"""The public plugin API of cvgl-benchmark: everything a plugin package may import.

Plugin packages import from this module only; every other module of the harness is
private and may change without notice. ``API_VERSION`` is "MAJOR.MINOR": a minor release
only adds names or optional fields, a major release may remove or change them. Hook
specifications (``benchmark/hookspecs.py``) note the version in which each took its form.

See docs/PLUGINS.md for the contract in prose and ``examples/cvgl-example-gem`` for a
complete package.
"""

from __future__ import annotations

from benchmark.backbones import (
    VGG16_CFG,
    VGG16_WEIGHTS,
    VGGOptions,
    vgg16_weights,
    vgg_preprocess,
    vgg_trunk,
)
from benchmark.conformance import ConformanceError, check_method
from benchmark.data.base import CrossViewSplit, DatasetBundle, SourceGeometry
from benchmark.errors import BenchmarkError
from benchmark.hookspecs import hookimpl
from benchmark.layers import BAM, CBAM, NetVLAD, TripletAttention
from benchmark.losses import pair_distances, soft_margin_triplet
from benchmark.metrics import Evaluation
from benchmark.model import CrossViewModel, TwoBranchModel, l2n
from benchmark.protocols import Batch, Loss, Outputs, SemiPositiveLoss, StagedLoss
from benchmark.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetSpec,
    LossSpec,
    MetricSpec,
    ModelCard,
    ModelOptions,
    ModelSpec,
    Preprocess,
    Recipe,
    Size,
)
from benchmark.weights import (
    FROM_SCRATCH,
    PretrainedWeights,
    flat_state_dict,
    load_into,
    pretrained_state,
    read_state_dict,
    timm_pretrained,
    unmapped_error,
)

API_VERSION = "1.0"

__all__ = [
    "API_VERSION",
    # registering: the hook marker and what the collecting hooks return
    "hookimpl",
    "ModelSpec",
    "ModelCard",
    "ModelOptions",
    "Recipe",
    "DatasetSpec",
    "LossSpec",
    "MetricSpec",
    # models
    "CrossViewModel",
    "TwoBranchModel",
    "Preprocess",
    "Size",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "l2n",
    # training: what a loss receives and may declare
    "Batch",
    "Outputs",
    "Loss",
    "StagedLoss",
    "SemiPositiveLoss",
    # evaluation: what a metric receives
    "Evaluation",
    # datasets
    "CrossViewSplit",
    "DatasetBundle",
    "SourceGeometry",
    # building blocks shared by several methods
    "vgg_trunk",
    "VGG16_CFG",
    "VGG16_WEIGHTS",
    "VGGOptions",
    "vgg16_weights",
    "vgg_preprocess",
    "NetVLAD",
    "BAM",
    "CBAM",
    "TripletAttention",
    "pair_distances",
    "soft_margin_triplet",
    # starting weights and published checkpoints
    "PretrainedWeights",
    "FROM_SCRATCH",
    "pretrained_state",
    "timm_pretrained",
    "read_state_dict",
    "flat_state_dict",
    "unmapped_error",
    "load_into",
    # errors and checks
    "BenchmarkError",
    "check_method",
    "ConformanceError",
]
