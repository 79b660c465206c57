"""A pydantic base for every file a user writes: unknown fields, inf/nan and
booleans in number fields are errors (YAML reads yes/no/on/off as booleans)."""
from __future__ import annotations

import typing

from pydantic import BaseModel, ConfigDict, field_validator


def _is_numeric(ann) -> bool:
    """True for int/float fields, also inside Optional, Annotated, list and dict values."""
    if ann in (int, float):
        return True
    if typing.get_origin(ann) is dict:
        return _is_numeric(typing.get_args(ann)[1])
    return any(_is_numeric(a) for a in typing.get_args(ann))


class StrictModel(BaseModel):
    # .inf / .nan are never meaningful quantities (an unlimited budget is an omitted one)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value, info):
        # YAML reads true/false/yes/no/on/off as booleans and pydantic would take them as 1/0
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values) and _is_numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not true/false (YAML reads true/false/yes/no/on/off as booleans)")
        return value
