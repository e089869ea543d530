"""Metric parameters, checked when a study file is read rather than when a trial runs.

A metric's fields are its parameters; their annotations say what is legal (``Count`` is an
integer >= 1, ``Fraction`` a number in (0, 1], ...). ``validated_params`` checks a study file's
``params`` against them strictly: ``steps: true`` or ``steps: -1`` is refused with the parameter's
name, where a plain dataclass would take it and fail (or mislead) in the middle of a search.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


@functools.cache
def _parameter_model(cls: type) -> type[BaseModel]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], f.default if f.default is not dataclasses.MISSING else ...)
        for f in dataclasses.fields(cls)
        if f.init
    }
    config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Parameters", __config__=config, **fields)


def validated_params(name: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as ``cls`` takes them; ``ValueError`` naming the metric and parameter otherwise."""
    try:
        _parameter_model(cls).model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = str(first["loc"][0])  # the parameter (a union adds the member that failed)
        if first["type"] == "extra_forbidden":
            known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
            raise ValueError(
                f"metric {name!r}: bad parameters {sorted(params)}: no parameter {where!r}; its parameters are {known}"
            ) from None
        named = next((e for e in error.errors() if e["type"] == "literal_error"), None)
        if named is not None:  # a name that is not one of the choices (some parameters take numbers too)
            choices = str(named["msg"]).replace("Input should be", "use")
            raise ValueError(f"metric {name!r}: unknown {where} {named['input']!r}; {choices}") from None
        message = str(first["msg"]).replace("Input should be", "should be")
        raise ValueError(f"metric {name!r}: parameter {where} {message} (got {first.get('input')!r})") from None
    return dict(params)  # as given: checked, not converted (``k: 5`` stays a count, not 5.0)
