"""Regimes: named layers of settings between a plugin's paper recipe and the user's own.

Each regime is one YAML file in this folder (its name is the file's stem):

    description: one line shown by `config show`
    settings: {variant: tiny, epochs: 6, ...}   # recipe fields and the variant only
    plugin_settings: quick                        # also apply each plugin's `quick` settings
    default_when: {dataset_prefix: synthetic, accelerator: false}   # chosen by --regime auto
    default: true                                 # --regime auto when no default_when matches
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.errors import BenchmarkError, suggest
from benchmark.settings import RECIPE_FIELDS, Recipe

FOLDER = Path(__file__).parent
SETTABLE = frozenset({"variant", *RECIPE_FIELDS})


class DefaultWhen(BaseModel):
    """When --regime auto picks a regime: the dataset's name prefix and whether a GPU is used."""

    model_config = ConfigDict(extra="forbid")

    dataset_prefix: str = ""
    accelerator: bool | None = None

    def describe(self) -> str:
        """E.g. 'synthetic* datasets without a GPU'."""
        device = {None: "", True: " on a GPU", False: " without a GPU"}[self.accelerator]
        return f"{self.dataset_prefix or 'any'}* datasets{device}"

    def matches(self, dataset: str, accelerator: bool) -> bool:
        """True when a run on DATASET, with or without an ACCELERATOR, falls under this rule."""
        device_ok = self.accelerator is None or self.accelerator == accelerator
        return dataset.startswith(self.dataset_prefix) and device_ok


class Regime(BaseModel):
    """One regime file, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    settings: dict[str, Any] = {}
    # The per-regime settings a ModelSpec holds (today only its `quick` mapping).
    plugin_settings: Literal["quick"] | None = None
    default_when: DefaultWhen | None = None
    default: bool = False


def _read(path: Path) -> Regime:
    try:
        data = yaml.safe_load(path.read_text()) or {}
        regime = Regime(name=path.stem, **data)
    except (OSError, yaml.YAMLError, TypeError, ValidationError) as exc:
        raise BenchmarkError(f"Regime file {str(path)!r} is invalid: {exc}") from None
    unknown = sorted(set(regime.settings) - SETTABLE)
    if unknown:
        raise BenchmarkError(
            f"Regime file {str(path)!r} sets {', '.join(unknown)}; a regime sets only the "
            f"variant and recipe fields ({', '.join(RECIPE_FIELDS)})."
        )
    recipe = {k: v for k, v in regime.settings.items() if k != "variant"}
    try:
        Recipe(**recipe)
    except ValidationError as exc:
        raise BenchmarkError(f"Regime file {str(path)!r} is invalid: {exc}") from None
    return regime


@cache
def available() -> dict[str, Regime]:
    """Every regime in this folder, by name."""
    found = {path.stem: _read(path) for path in sorted(FOLDER.glob("*.yaml"))}
    if sum(r.default for r in found.values()) != 1:
        raise BenchmarkError(f"Exactly one regime in {FOLDER} must say `default: true`.")
    return found


def get(name: str) -> Regime:
    """The regime called NAME, or a clear error listing the others."""
    found = available()
    if name not in found:
        raise BenchmarkError(suggest(name, found, "regime"))
    return found[name]


def auto(dataset: str, accelerator: bool) -> str:
    """The regime --regime auto chooses for DATASET with or without an ACCELERATOR."""
    found = available()
    for regime in found.values():
        if regime.default_when is not None and regime.default_when.matches(dataset, accelerator):
            return regime.name
    return next(r.name for r in found.values() if r.default)
