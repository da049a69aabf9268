"""What each run setting is for, declared once beside the field: its role.

Every field of a run's configuration carries one role, and everything else is derived from
it: which fields a plugin's paper recipe and a regime may set (``recipe``), which ones the
command line alone chooses (``identity``), which ones form the run's identity (every role
but ``infrastructure``) and which ones a leaderboard row is told apart by.

The training recipe is declared here too (defaults and bounds once): a plugin's
``Recipe(...)`` and the run configuration share these fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined

Role = Literal["identity", "data", "method", "recipe", "randomness", "evaluation", "infrastructure"]

ROLES: dict[str, str] = {
    "identity": "names the run; chosen with --plugins, --variant and --regime, never --set",
    "data": "what the run trains and tests on",
    "method": "the model's options (over the variant's)",
    "recipe": "how the model is trained; a paper recipe and a regime may set these",
    "randomness": "seeds and determinism",
    "evaluation": "how the test split is presented and scored",
    "infrastructure": "where and how fast the run goes; never part of its identity",
}

# Roles that cannot change what a run measures: left out of its identity.
NOT_OUTCOME: frozenset[str] = frozenset({"infrastructure"})


def setting(role: Role, default: Any = PydanticUndefined, **kwargs: Any) -> Any:
    """A pydantic field that declares its ROLE (stored in the field's JSON schema extras)."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    return Field(default, json_schema_extra={**extra, "role": role}, **kwargs)


def roles_of(model: type[BaseModel]) -> dict[str, str]:
    """{field name: role} of MODEL; a field without a role is a programming error."""
    out = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        role = extra.get("role") if isinstance(extra, dict) else None
        if role not in ROLES:
            raise TypeError(
                f"{model.__name__}.{name} declares no role; give it one of {', '.join(ROLES)} "
                "with benchmark.settings.setting(role, ...)."
            )
        out[name] = role
    return out


class Recipe(BaseModel):
    """A paper's training recipe: what the runner uses unless a regime or the user says
    otherwise. A plugin sets the fields its paper states; the others keep these defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    optimizer: Literal["adam", "adamw", "sgd"] = setting("recipe", "adam")
    lr: float = setting("recipe", 1e-5, gt=0, le=10)
    weight_decay: float = setting("recipe", 0.0, ge=0, le=10)
    adam_eps: float = setting("recipe", 1e-8, gt=0, le=1, description="Adam/AdamW epsilon")
    batch_size: int = setting(
        "recipe",
        32,
        ge=2,
        le=65_536,
        description="global batch over all torchrun processes; in-batch negatives need >= 2",
    )
    epochs: int = setting("recipe", 100, ge=0, le=100_000)
    schedule: Literal["constant", "cosine", "exponential"] = setting("recipe", "constant")
    warmup_steps: int = setting("recipe", 0, ge=0, description="linear warm-up, in steps")
    warmup_epochs: float = setting(
        "recipe",
        0.0,
        ge=0,
        le=100_000,
        description="linear warm-up, in epochs (rounded to whole steps); not with warmup_steps",
    )
    grad_clip: float | None = setting("recipe", None, gt=0)
    loss: str = setting("recipe", "soft-margin-triplet")
    loss_options: dict[str, Any] = setting("recipe", default_factory=dict)
    sam_rho: float | None = setting(
        "recipe", None, gt=0, description="ASAM radius; None = plain optimizer"
    )
    mining: bool = setting("recipe", False, description="global hard-negative mining (VIGOR)")
    mining_pool: int = setting(
        "recipe", 40_000, ge=1, description="tiles per mining pool (capped at the dataset)"
    )
    mining_k: int = setting(
        "recipe", 100, ge=1, description="most similar pool tiles kept per panorama"
    )
    selection: Literal["last", "best"] = setting(
        "recipe",
        "last",
        description="the epoch evaluated on test: the last, or the best by validation R@1",
    )
    val_fraction: float | None = setting(
        "recipe",
        None,
        ge=0,
        lt=1,
        description="share of the training panoramas held out as a validation split, scored "
        "(R@1) after every epoch; None: 0.05 when selection is 'best', else 0 (none)",
    )
    precision: Literal["fp32", "bf16", "fp16"] = setting(
        "recipe",
        "fp32",
        description="training arithmetic: fp32, bf16 autocast, or fp16 autocast with loss "
        "scaling (CUDA only; --amp)",
    )
    augment: list[str] = setting(
        "recipe",
        default_factory=list,
        description="training augmentations (never at evaluation), e.g. circular-shift",
    )


RECIPE_FIELDS: tuple[str, ...] = tuple(
    name for name, role in roles_of(Recipe).items() if role == "recipe"
)
