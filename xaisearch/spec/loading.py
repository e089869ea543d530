"""Reading a study file: YAML, then validation, every problem one line naming the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xaisearch.errors import InputError
from xaisearch.spec.study import StudySpec


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item not in ("function-after", "function-before") and not str(item).startswith(("literal[", "function")):
            parts.append(str(item))
    return ".".join(parts)


def one_line_error(source: str, error: ValidationError) -> str:
    """The first validation error as ``source: field 'a.b[1]': message``."""
    first = error.errors()[0]
    field = _location(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field (check its spelling)"
    else:
        message = f"{message} (got {first.get('input')!r})" if first["type"] != "value_error" else message
    where = f"field '{field}'" if field else "top level"
    extra = f" (and {len(error.errors()) - 1} more problems)" if len(error.errors()) > 1 else ""
    return f"{source}: {where}: {message}{extra}".replace("\n", " ")


def parse_spec(data: Any, source: str = "study") -> StudySpec:
    """Validate study data in two steps: the fields against the registries' names (no torch, so a
    plain mistake is reported at once), then what needs the implementations (metric parameters)."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of study fields at the top level, got {type(data).__name__}")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        raise InputError(one_line_error(source, error)) from None
    check_with_implementations(spec, source)
    return spec


def check_with_implementations(spec: StudySpec, source: str = "study") -> None:
    """Construct every metric with its parameters, so that a bad one fails now, not in a trial."""
    from xaisearch.metrics.registry import make_metric

    for index, metric in enumerate(spec.metrics):
        try:
            make_metric(metric.name, **metric.params)
        except ValueError as error:
            raise InputError(f"{source}: field 'metrics[{index}]': {error}".replace("\n", " ")) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is an ``InputError`` naming the file and field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: study file not found; pass the path of a YAML study file such as studies/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_spec(data, str(path))
