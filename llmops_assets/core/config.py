"""What every settings model shares: unknown keys are errors, relative paths resolve in one place,
and a stage's artifact reuse key is derived from its whole settings model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SEED_DIR = PACKAGE_DIR / "data" / "seed"

# A field marked `json_schema_extra={REUSE_KEY: [...]}` shapes only the artifacts of the listed
# stages (an empty list: no artifact, e.g. tracking); every other field shapes every stage's.
REUSE_KEY = "shapes"


class UnmetRequirement(RuntimeError):
    """The settings ask for what this machine or environment lacks (a GPU, a key, a variable):
    a retry would fail the same way, so steps fail at once and name the setting."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def resolve_paths(model: BaseModel, base: Path) -> None:
    """Every `Path` field of `model` and its sub-models (lists of paths included), made absolute
    against `base`, the folder of the config file they were written in."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            resolve_paths(value, base)
        elif isinstance(value, Path):
            setattr(model, name, (base / value).resolve())
        elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
            setattr(model, name, [(base / v).resolve() for v in value])


def reuse_key(model: BaseModel, stage: str) -> dict[str, Any]:
    """The settings that shape `stage`'s artifact: every field, recursively, except those marked
    as shaping only other stages. A new field is in the key unless marked, so adding one can
    never silently reuse an artifact built without it."""
    key: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        shapes = (field.json_schema_extra or {}).get(REUSE_KEY) if isinstance(field.json_schema_extra, dict) else None
        if shapes is not None and stage not in shapes:
            continue
        value = getattr(model, name)
        key[name] = reuse_key(value, stage) if isinstance(value, BaseModel) else _jsonable(value)
    return key


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
