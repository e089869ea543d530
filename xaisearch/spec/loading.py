"""Reading a study file: YAML, then validation, every problem one line naming the file and field.

The YAML is read with duplicate keys refused (YAML itself lets the last one win silently), and the
fields are validated strictly, as JSON: ``n_trials: true`` is a boolean, not the number 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from xaisearch.errors import InputError
from xaisearch.field_errors import one_line_error
from xaisearch.files import read_text
from xaisearch.spec.study import StudySpec


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_spec(data: Any, source: str = "study") -> StudySpec:
    """Validate study data in two steps: the fields against the registries' names (no torch, so a
    plain mistake is reported at once), then what needs the implementations (metric parameters)."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of study fields at the top level, got {type(data).__name__}")
    try:
        # as JSON, strictly: booleans are not numbers, numbers are not strings; lists become tuples
        spec = StudySpec.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as error:
        raise InputError(one_line_error(source, error, StudySpec)) from None
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
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: study file not found; pass the path of a YAML study file such as studies/demo.yaml")
    text = read_text(path, "save the study file as UTF-8")
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]  # a ReaderError has no problem
        raise InputError(f"{path}: not valid YAML{where}: {problem}".replace("\n", " ")) from None
    return parse_spec(data, str(path))
