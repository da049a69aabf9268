"""Typed specifications that plugins return from the collecting hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import torch

    from benchmark.data.base import DatasetBundle
    from benchmark.model import CrossViewModel
    from benchmark.weights import PretrainedWeights

Size = tuple[int, int]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG16 input as the TF1 codes of CVM-Net, SAFA and VIGOR feed it: BGR pixel values in
# 0..255 minus (103.939, 116.779, 123.6) (their loaders' red mean, not Caffe's 123.68).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.6)


class ModelOptions(BaseModel):
    """Options every model plugin accepts; plugins subclass this with their own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ground_size: Size = Field((128, 512), description="ground input (height, width)")
    aerial_size: Size = Field((128, 512), description="aerial input (height, width)")
    polar: bool = Field(True, description="polar-transform the aerial image")
    pretrained: bool | str = Field(
        False, description="False, True (ImageNet through timm) or a local weights file"
    )

    def pretrained_weights(self) -> PretrainedWeights | None:
        """The weights ``pretrained`` asks for, checked before a run (None: nothing to check)."""
        return None


class Recipe(BaseModel):
    """A paper's training recipe: what the runner uses unless told otherwise."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    batch_size: int = 32
    epochs: int = 100
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    loss: str = "soft-margin-triplet"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    sam_rho: float | None = None
    mining: bool = False


@dataclass(frozen=True)
class Preprocess:
    """The input contract of a model: sizes, polar aerial or not, and pixel normalisation.

    A pixel x in 0..255 becomes (x / 255 - mean) / std per channel, MEAN and STD given in RGB
    order; with BGR the channels are then reversed (what Caffe-converted weights expect).
    """

    ground_size: Size
    aerial_size: Size
    polar: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False

    @classmethod
    def caffe(cls, ground_size: Size, aerial_size: Size, polar: bool) -> Preprocess:
        """Caffe VGG input: BGR, 0..255 minus CAFFE_BGR_MEAN, no std scaling."""
        b, g, r = CAFFE_BGR_MEAN
        mean = (r / 255.0, g / 255.0, b / 255.0)
        return cls(ground_size, aerial_size, polar, mean, (1 / 255.0, 1 / 255.0, 1 / 255.0), True)

    def normalisation(self) -> str:
        """The pixel normalisation in words, for result files."""
        scale = [round(255 * m, 3) for m in self.mean]
        if self.bgr and all(abs(s * 255 - 1) < 1e-9 for s in self.std):
            return f"caffe: BGR, x - {scale[::-1]} (x in 0..255), no std scaling"
        order = "BGR" if self.bgr else "RGB"
        return f"{order}, (x / 255 - mean) / std"


@dataclass(frozen=True)
class ModelCard:
    """What a paper claims: citation, inputs, recipe, and the numbers it reports."""

    title: str
    authors: str
    venue: str
    url: str
    summary: str
    reported: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    reported_cost: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A method plugin: options (paper defaults), named variants, recipe, card and builder."""

    name: str
    options: type[ModelOptions]
    build: Callable[[ModelOptions], CrossViewModel]
    recipe: Recipe
    card: ModelCard
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset plugin: its splits and a builder from (root, split, options)."""

    name: str
    splits: tuple[str, ...]
    default_split: str
    build: Callable[..., DatasetBundle]
    description: str = ""
    needs_root: bool = True


@dataclass(frozen=True)
class LossSpec:
    """A loss plugin: build(**options) returns a callable (outputs, batch) -> scalar tensor."""

    name: str
    build: Callable[..., Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], torch.Tensor]]
    description: str = ""


class MetricDisplay(BaseModel):
    """How the leaderboard shows one key a metric computes; recorded in every result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="the key in the metric's output")
    label: str = Field("", description="column header (default: the key)")
    unit: str = Field("", description="e.g. '%' or 'm', shown on plot axes")
    higher_is_better: bool = True
    digits: int = Field(2, ge=0, le=6, description="decimals shown")
    bounds: tuple[float | None, float | None] = Field(
        (None, None), description="valid range; a result outside it is rejected"
    )
    column: bool = Field(True, description="a column of the leaderboard tables")
    rank: bool = Field(False, description="rows are ranked by this key")
    plot: str | None = Field(
        None, pattern=r"^[a-z0-9_]+$", description="the figure it is drawn in, e.g. 'recall'"
    )
    x: float | str | None = Field(
        None, description="its x in that figure: a number, or the metric key holding it"
    )
    y: str | None = Field(
        None, description="for a curve-valued metric: the key of its y list (x: its x list)"
    )

    @classmethod
    def percent(cls, key: str, **fields: Any) -> MetricDisplay:
        """A percentage in 0..100, higher is better."""
        return cls(key=key, unit="%", bounds=(0.0, 100.0), **fields)

    @property
    def header(self) -> str:
        """The column header."""
        return self.label or self.key


@dataclass(frozen=True)
class MetricSpec:
    """A metric plugin: compute(evaluation) -> {name: value}; applies(evaluation) gates it;
    display declares how the leaderboard shows the keys it computes."""

    name: str
    compute: Callable[[Any], dict[str, Any]]
    applies: Callable[[Any], bool] = lambda evaluation: True
    description: str = ""
    display: tuple[MetricDisplay, ...] = ()
