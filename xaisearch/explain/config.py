"""ExplainerConfig: one explanation setting as data, with a versioned JSON form.

The JSON (format ``xaisearch.composite/1``, DESIGN.md §3.3) names the model, the canonizer, the
method, and for each layer group its explicit layer names, rule and parameters. It is what a
search exports and what ``xaisearch.composite_from_config`` turns back into a zennit composite
that reproduces the trial's attributions bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xaisearch.explain.rules import normalise_rule
from xaisearch.files import write_text
from xaisearch.models.ref import ModelRef

CONFIG_FORMAT: Literal["xaisearch.composite/1"] = "xaisearch.composite/1"
Method = Literal["lrp", "gradient"]


class _RuleFields(BaseModel):
    """``rule`` and ``params``, validated and completed with defaults (see ``explain.rules``)."""

    model_config = ConfigDict(extra="forbid")
    if TYPE_CHECKING:  # declared by each subclass, in its own field order (the JSON keeps it)
        rule: str
        params: dict[str, Any]

    @model_validator(mode="after")
    def _valid_rule(self) -> _RuleFields:
        self.params = normalise_rule(self.rule, self.params)
        return self


class RuleSpec(_RuleFields):
    rule: str
    params: dict[str, Any] = Field(default_factory=dict)


class GroupRule(_RuleFields):
    name: str
    layers: list[str]
    rule: str
    params: dict[str, Any] = Field(default_factory=dict)


class FirstLayerRule(_RuleFields):
    layer: str | None = None  # resolved from the traced graph when the config is built
    rule: str
    params: dict[str, Any] = Field(default_factory=dict)


class ExplainerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["xaisearch.composite/1"] = CONFIG_FORMAT
    model: ModelRef
    canonizer: str = "none"
    method: Method = "lrp"
    groups: list[GroupRule] = Field(default_factory=list)
    first_layer: FirstLayerRule | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    study: str | None = None
    trial: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)

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

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash never leaves a half-written config."""
        return write_text(path, self.to_json() + "\n")

    @classmethod
    def from_json(cls, text: str) -> ExplainerConfig:
        return cls.model_validate(json.loads(text))


def load_config(source: str | Path | dict | ExplainerConfig) -> tuple[ExplainerConfig, Path | None]:
    """A config from a JSON file, a dict or a config; also the folder relative weights live in."""
    if isinstance(source, ExplainerConfig):
        return source, None
    if isinstance(source, dict):
        return ExplainerConfig.model_validate(source), None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"composite config {path} does not exist; export one with 'xaisearch export'")
    return ExplainerConfig.from_json(path.read_text()), path.parent
