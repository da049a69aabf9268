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

Size = tuple[int, int]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelOptions(BaseModel):
    """Options every model plugin accepts; plugins subclass this with their own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ground_size: Size = Field((128, 512), description="ground input (height, width)")
    aerial_size: Size = Field((128, 512), description="aerial input (height, width)")
    polar: bool = Field(True, description="polar-transform the aerial image")
    pretrained: bool | str = Field(
        False, description="False, True (ImageNet through timm) or a local weights file"
    )


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
    """The input contract of a model: sizes, polar aerial or not, and pixel normalisation."""

    ground_size: Size
    aerial_size: Size
    polar: bool
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False


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
    # check(split, options): validate a generated dataset's options before any work
    check: Callable[[str, dict], None] | None = None


@dataclass(frozen=True)
class LossSpec:
    """A loss plugin: build(**options) returns a callable (outputs, batch) -> scalar tensor."""

    name: str
    build: Callable[..., Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], torch.Tensor]]
    description: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """A metric plugin: compute(evaluation) -> {name: value}; applies(evaluation) gates it."""

    name: str
    compute: Callable[[Any], dict[str, Any]]
    applies: Callable[[Any], bool] = lambda evaluation: True
    description: str = ""
