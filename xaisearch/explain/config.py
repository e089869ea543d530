"""ExplainerConfig: one explanation setting as data, with a versioned JSON form.

The JSON (format ``xaisearch.composite/1``, DESIGN.md §3.3) names the model, the canonizer, the
method and its ``params`` (``explain.baselines``), and for LRP each layer group's explicit layer
names, rule and parameters. It is what a search exports and what ``xaisearch.composite_from_config``
(LRP and the composite-only methods) or ``xaisearch.attributor_from_config`` (every method) turn
back into zennit objects that reproduce the trial's attributions bit for bit.

Every problem with a config file is one ``InputError`` line naming the file and the field
(``groups[0].params``), as for study files; ``model_differences`` and ``missing_layers`` say why a
valid config does not fit a given model.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from xaisearch.canonize.catalog import CANONIZERS
from xaisearch.errors import InputError
from xaisearch.explain.baselines import LRP, METHODS, normalise_method, unknown_method
from xaisearch.explain.evidence import ValidationEvidence
from xaisearch.explain.rules import RULES, normalise_rule, unknown_rule
from xaisearch.field_errors import one_line_error
from xaisearch.files import read_text, write_text
from xaisearch.models.ref import ModelRef

CONFIG_FORMAT: Literal["xaisearch.composite/1"] = "xaisearch.composite/1"


class _RuleFields(BaseModel):
    """``rule`` and ``params``, validated and completed with defaults (see ``explain.rules``).

    Checked field by field, so a problem is reported at ``rule`` or at ``params``; each subclass
    declares ``rule`` before ``params`` (validation follows the declaration order).
    """

    model_config = ConfigDict(extra="forbid")
    if TYPE_CHECKING:  # declared by each subclass, in its own field order (the JSON keeps it)
        rule: str
        params: dict[str, Any]

    @field_validator("rule", check_fields=False)
    @classmethod
    def _known_rule(cls, rule: str) -> str:
        if rule not in RULES:
            raise ValueError(unknown_rule(rule))
        return rule

    @field_validator("params", check_fields=False)
    @classmethod
    def _valid_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        rule = info.data.get("rule")  # absent when the rule itself was refused: that error is reported
        return params if rule is None else normalise_rule(rule, params)


def _params() -> Any:
    return Field(default_factory=dict, validate_default=True)  # defaults are filled in for {} too


class RuleSpec(_RuleFields):
    rule: str
    params: dict[str, Any] = _params()


class GroupRule(_RuleFields):
    name: str
    layers: list[str]
    rule: str
    params: dict[str, Any] = _params()


class FirstLayerRule(_RuleFields):
    layer: str | None = None  # resolved from the traced graph when the config is built
    rule: str
    params: dict[str, Any] = _params()


class ExplainerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["xaisearch.composite/1"] = CONFIG_FORMAT
    model: ModelRef
    canonizer: str = "none"
    method: str = LRP  # a name in ``explain.baselines.METHODS``
    # the method's parameters, defaults filled in; left out of the JSON when empty (LRP: older files' form)
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True, exclude_if=lambda params: not params)
    groups: list[GroupRule] = Field(default_factory=list)
    first_layer: FirstLayerRule | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    study: str | None = None
    trial: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    validation: ValidationEvidence | None = None  # held-out evidence of the export (``explain.evidence``)

    @field_validator("canonizer")
    @classmethod
    def _known_canonizer(cls, name: str) -> str:
        if name not in CANONIZERS:
            raise ValueError(f"unknown canonizer {name!r}; choose from {CANONIZERS.available()}")
        return name

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in METHODS:
            raise ValueError(unknown_method(method))
        return method

    @field_validator("params")
    @classmethod
    def _valid_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("method")  # absent when the method itself was refused: that error is reported
        return params if method is None else normalise_method(method, params)

    @field_validator("groups", "first_layer")
    @classmethod
    def _rules_are_lrp(cls, value: Any, info: ValidationInfo) -> Any:
        method = info.data.get("method", LRP)
        if value and method != LRP:
            raise ValueError(f"rules apply to method 'lrp' only, not {method!r}; remove {info.field_name}")
        return value

    @field_validator("groups")
    @classmethod
    def _layers_once(cls, groups: list[GroupRule]) -> list[GroupRule]:
        seen: dict[str, str] = {}
        for group in groups:
            for layer in group.layers:
                if layer in seen:
                    raise ValueError(f"layer {layer!r} is in groups {seen[layer]!r} and {group.name!r}")
                seen[layer] = group.name
        return groups

    def rule_by_layer(self) -> dict[str, RuleSpec]:
        """The rule each named layer gets; the first-layer rule overrides its group's rule."""
        rules: dict[str, RuleSpec] = {}
        for group in self.groups:
            for layer in group.layers:
                rules[layer] = RuleSpec(rule=group.rule, params=group.params)
        if self.first_layer is not None and self.first_layer.layer is not None:
            rules[self.first_layer.layer] = RuleSpec(rule=self.first_layer.rule, params=self.first_layer.params)
        return rules

    def model_differences(self, model: ModelRef) -> list[str]:
        """How the model this config was made for differs from ``model`` (name, classes, input shape)."""
        mine, theirs = self.model, model
        differences = []
        if mine.name != theirs.name:
            differences.append(f"model {mine.name!r} (the study's model is {theirs.name!r})")
        if mine.num_classes != theirs.num_classes:
            differences.append(f"num_classes {mine.num_classes} (the study's model has {theirs.num_classes})")
        if tuple(mine.input_shape) != tuple(theirs.input_shape):
            differences.append(
                f"input_shape {list(mine.input_shape)} (the study's model takes {list(theirs.input_shape)})"
            )
        return differences

    def missing_layers(self, module_names: Collection[str]) -> list[str]:
        """The layers this config names (groups and first layer) that are not among ``module_names``."""
        named = [layer for group in self.groups for layer in group.layers]
        if self.first_layer is not None and self.first_layer.layer is not None:
            named.append(self.first_layer.layer)
        return [layer for layer in dict.fromkeys(named) if layer not in module_names]

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash never leaves a half-written config."""
        return write_text(path, self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str, source: str = "composite config") -> ExplainerConfig:
        """The config in ``text``; any problem is one ``InputError`` line starting with ``source``."""
        return parse_config(_json_data(text, source), source)


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _json_data(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{source}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}; "
            "a composite config is the JSON file 'xaisearch export' writes"
        ) from None


def parse_config(data: Any, source: str = "composite config") -> ExplainerConfig:
    """Validate config data (a JSON object) strictly, as JSON: every problem is one ``InputError``
    line ``source: field 'groups[0].params': ...``."""
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), "null" if data is None else type(data).__name__)
        raise InputError(
            f"{source}: expected a JSON object with the composite's fields (format, model, groups, ...) "
            f"at the top level, got {kind}"
        )
    found = data.get("format", CONFIG_FORMAT)
    if found != CONFIG_FORMAT:  # another format's fields would only produce misleading errors
        raise InputError(
            f"{source}: field 'format': {found!r} is not a format this xaisearch reads ({CONFIG_FORMAT!r}); "
            "export the config again with this version ('xaisearch export')"
        )
    try:
        # as JSON, strictly: booleans are not numbers, numbers are not strings; lists become tuples
        return ExplainerConfig.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as error:
        raise InputError(one_line_error(source, error, ExplainerConfig)) from None


def load_config(source: str | Path | dict | ExplainerConfig) -> tuple[ExplainerConfig, Path | None]:
    """A config from a JSON file, a dict or a config; also the folder relative weights live in.

    Every problem (no such file, not UTF-8, not JSON, an invalid field) is one ``InputError``
    line naming the file (``composite config`` for a dict) and the field.
    """
    if isinstance(source, ExplainerConfig):
        return source, None
    if isinstance(source, dict):
        return parse_config(source), None
    path = Path(source)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; pass the composite config file in it (e.g. best_composite.json)")
    if not path.is_file():
        raise InputError(f"{path}: composite config not found; export one with 'xaisearch export'")
    text = read_text(path, "a composite config is the JSON file 'xaisearch export' writes")
    return ExplainerConfig.from_json(text, str(path)), path.parent
