"""One line for a pydantic validation error: the file, the field (``a.b[1]``) and what is wrong.

Study files (``spec``) and exported composites (``explain.config``) report their mistakes
this way; a misspelt field also gets "did you mean".
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item not in ("function-after", "function-before") and not str(item).startswith(("literal[", "function")):
            parts.append(str(item))
    return ".".join(parts)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (for "did you mean"), if one does."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        while typing.get_origin(current) in (list, dict, typing.Union, types.UnionType, typing.Annotated):
            args = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            args = args or [a for a in typing.get_args(current)[-1:] if typing.get_origin(a) in (list, dict)]
            if not args:
                break
            current = args[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unknown_field_message(root: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    holder = _model_at(root, loc[:-1]) if root is not None else None
    if holder is not None:
        close = difflib.get_close_matches(str(loc[-1]), list(holder.model_fields), n=1)
        if close:
            return f"is not a known field; did you mean '{close[0]}'?"
    return "is not a known field (check its spelling)"


def one_line_error(source: str, error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first validation error as ``source: field 'a.b[1]': message``; with ``model`` (the
    validated class), a misspelt field also gets "did you mean". A misspelt field is reported
    before the "missing" error it causes."""
    errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    field = _location(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
        message = _unknown_field_message(model, tuple(first["loc"]))
    else:
        message = f"{message} (got {first.get('input')!r})" if first["type"] != "value_error" else message
    named = re.match(r"([a-z_]+(?:\.[a-z_]+)+): (.*)", message)  # a check across fields names its field first
    if not field and named:
        field, message = named.groups()
    where = f"field '{field}'" if field else "top level"
    more = len(errors) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {where}: {message}{extra}".replace("\n", " ")
