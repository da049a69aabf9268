"""Typed, validated specifications that plugin packages return from the collecting hooks.

Specs and cards are checked when they are created: an unknown field, a wrong type, a name
the command line cannot carry or a missing variant is an error naming the field, so a
wrong plugin package fails when it loads, not when a run reaches it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from benchmark.settings import RECIPE_FIELDS
from benchmark.settings import Recipe as RecipeSettings

if TYPE_CHECKING:
    from benchmark.data.base import DatasetBundle
    from benchmark.metrics import Evaluation
    from benchmark.model import CrossViewModel
    from benchmark.protocols import Loss
    from benchmark.weights import PretrainedWeights

Size = tuple[int, int]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG16 input as the TF1 codes of CVM-Net, SAFA and VIGOR feed it: BGR pixel values in
# 0..255 minus (103.939, 116.779, 123.6) (their loaders' red mean, not Caffe's 123.68).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.6)
REQUIRED_VARIANTS = ("paper", "tiny")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STRICT = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def check_name(name: str) -> str:
    """A spec name is what the command line and file names carry: letters, digits, . _ -."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


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


class Recipe(RecipeSettings):
    """A paper's training recipe, as its official code runs it: what the runner uses unless a
    regime or the user says otherwise, with the settings that differ on one dataset."""

    datasets: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="recipe settings that differ on one dataset, e.g. {'cvact': {...}}",
    )

    @field_validator("datasets")
    @classmethod
    def _recipe_settings_only(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for dataset, settings in value.items():
            if unknown := set(settings) - set(RECIPE_FIELDS):
                raise ValueError(f"{dataset}: {sorted(unknown)} are not recipe settings")
        return value


if TYPE_CHECKING:
    ModelBuilder = Callable[[ModelOptions], CrossViewModel]
    DatasetBuilder = Callable[[Any, str, Mapping[str, Any]], DatasetBundle]
    LossBuilder = Callable[..., Loss]
    MetricFunction = Callable[[Evaluation], Mapping[str, Any]]
    MetricGate = Callable[[Evaluation], bool]
else:  # checked as callables when a spec is made; the precise types above are for readers
    ModelBuilder = DatasetBuilder = LossBuilder = MetricFunction = MetricGate = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
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


@dataclass(frozen=True, config=STRICT)
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


@dataclass(frozen=True, config=STRICT)
class ModelSpec:
    """A method: options (paper defaults), named variants, recipe, card and builder.

    ``variants`` must hold ``paper`` (the paper's configuration, usually ``{}``) and
    ``tiny`` (the same code path, narrowed to train on a CPU); each is checked against
    ``options`` here. ``quick`` holds run settings of the quick regime (checked against the
    run configuration when the plugin package loads).
    """

    name: str
    options: type[ModelOptions]
    build: ModelBuilder
    recipe: Recipe
    card: ModelCard
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _method_name(cls, name: str) -> str:
        if name == "all":
            raise ValueError("'all' is reserved (--plugins all runs every method)")
        return check_name(name)

    @field_validator("variants")
    @classmethod
    def _required_variants(cls, variants: Mapping[str, Any]) -> Mapping[str, Any]:
        missing = [v for v in REQUIRED_VARIANTS if v not in variants]
        if missing:
            raise ValueError(
                f"missing {', '.join(repr(v) for v in missing)}: every method has 'paper' "
                "(its paper's configuration, usually {}) and 'tiny' (the same code path "
                "narrowed to train on a CPU; the quick regime uses it)"
            )
        for variant in variants:
            check_name(variant)
        return variants

    def __post_init__(self) -> None:
        for variant, values in self.variants.items():
            try:
                self.options(**values)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(f"variant {variant!r} has invalid options ({problems})") from None

    def changes(self, variant: str) -> dict[str, tuple[Any, Any]]:
        """The options VARIANT sets to other values than the paper variant does, as
        {option: (paper value, variant value)}."""
        paper = self.options(**self.variants.get("paper", {})).model_dump()
        other = self.options(**self.variants[variant]).model_dump()
        return {k: (paper[k], v) for k, v in other.items() if paper.get(k) != v}


@dataclass(frozen=True, config=STRICT)
class DatasetSpec:
    """A dataset plugin: its splits and a builder from (root, split, options)."""

    name: str
    splits: tuple[str, ...]
    default_split: str
    build: DatasetBuilder
    description: str = ""
    needs_root: bool = True
    # check(split, options): validate a generated dataset's options before any work
    check: Callable[[str, dict], None] | None = None

    _name = field_validator("name")(check_name)

    def __post_init__(self) -> None:
        if self.default_split not in self.splits:
            raise ValueError(
                f"default_split {self.default_split!r} is not one of the splits {self.splits}"
            )


@dataclass(frozen=True, config=STRICT)
class LossSpec:
    """A loss plugin: build(**options) returns a Loss, called as loss(outputs, batch)."""

    name: str
    build: LossBuilder
    description: str = ""

    _name = field_validator("name")(check_name)


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


def always(evaluation: Evaluation) -> bool:
    """The default gate of a metric: it applies to every evaluation."""
    return True


@dataclass(frozen=True, config=STRICT)
class MetricSpec:
    """A metric plugin: compute(evaluation) -> {key: value}, merged into the result's metrics
    when applies(evaluation) is true; display declares how the leaderboard shows its keys."""

    name: str
    compute: MetricFunction
    applies: MetricGate = always
    description: str = ""
    display: tuple[MetricDisplay, ...] = ()

    _name = field_validator("name")(check_name)
