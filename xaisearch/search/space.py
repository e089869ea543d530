"""The search space: rule choice per layer group, then that rule's parameters (conditional).

Optuna parameter names are ``<group>.rule`` and ``<group>.<param>`` (``low.gamma``), plus
``first_layer.rule``; a parameter only exists in trials whose rule uses it. A range with
``zero: true`` adds the categorical ``<group>.<param>.zero`` before it: when true the parameter
is exactly 0 and ``<group>.<param>`` is not sampled. Layer groups are resolved to module names
once, so every sampled config names its layers explicitly.

A study of a baseline method (``search_space.method``, ``spec.methods``) samples that method's
parameters instead, as ``method.<param>`` (``method.noise_level``), and has no layer groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

from xaisearch.errors import InputError
from xaisearch.explain.baselines import LRP, METHODS
from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule
from xaisearch.explain.groups import depth_groups, first_layer, linear_layers, named_groups
from xaisearch.explain.rules import RULES
from xaisearch.models.ref import ModelRef
from xaisearch.spec import FIRST_LAYER_GROUP, GRID_SAMPLER, ParamRange, StudySpec
from xaisearch.spec.methods import METHOD_PREFIX, trial_params

ZERO_SUFFIX = ".zero"  # ``low.gamma.zero``: the choice of exactly 0 (``ParamRange.zero``)
ZERO_CHOICES = (False, True)

# rule -> the parameters Optuna samples for it, from the one rule table
SEARCHED_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(p.name for p in rule.searched()) for name, rule in RULES.items() if rule.searched()
}

# zennit's standard composites as (conv rule, conv params, dense rule, dense params, first-layer choice)
_SEED_RECIPES: dict[str, tuple[str, dict[str, float], str, dict[str, float], str]] = {
    "epsilon_plus": ("zplus", {}, "epsilon", {"epsilon": 1e-6}, FIRST_LAYER_GROUP),
    "epsilon_plus_flat": ("zplus", {}, "epsilon", {"epsilon": 1e-6}, "flat"),
    "epsilon_alpha2_beta1": ("alpha_beta", {"alpha": 2.0}, "epsilon", {"epsilon": 1e-6}, FIRST_LAYER_GROUP),
    "epsilon_alpha2_beta1_flat": ("alpha_beta", {"alpha": 2.0}, "epsilon", {"epsilon": 1e-6}, "flat"),
    "epsilon_gamma_box": ("gamma", {"gamma": 0.25}, "epsilon", {"epsilon": 1e-6}, "zbox"),
}
STANDARD_COMPOSITES = _SEED_RECIPES  # public: the canonization table builds them for any model


class TrialLike(Protocol):
    """What sampling needs of a trial: Optuna's ``Trial`` and ``FixedTrial`` both fit."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...


@dataclass
class SearchSpace:
    spec: StudySpec
    model_ref: ModelRef
    canonizer: str
    groups: dict[str, list[str]]
    dense_groups: set[str]
    first_layer: str

    @classmethod
    def build(cls, spec: StudySpec, model: nn.Module, model_ref: ModelRef, canonizer: str) -> SearchSpace:
        shape = spec.model.input_shape
        if spec.search_space.method != LRP:  # a baseline method: no rules, so no layer groups
            return cls(spec, model_ref, canonizer, {}, set(), first_layer(model, shape))
        layer_groups = spec.search_space.layer_groups
        try:
            groups = depth_groups(model, shape) if layer_groups == "depth" else named_groups(model, shape, layer_groups)
        except ValueError as error:
            raise InputError(f"search_space.layer_groups: {error}") from None
        declared = spec.search_space.groups
        for name in declared:
            if name not in groups:
                raise InputError(
                    f"search_space.groups.{name}: this model has no such layer group; its groups are {list(groups)}"
                )
        for name in groups:
            if name not in declared:
                raise InputError(f"search_space.groups: layer group {name!r} needs a 'rules' list")
        dense_layers = {n for n, kind in linear_layers(model, shape) if kind == "dense"}
        dense = {g for g, layers in groups.items() if set(layers) <= dense_layers}
        return cls(spec, model_ref, canonizer, groups, dense, first_layer(model, shape))

    # -- sampling ---------------------------------------------------------------------------
    def _grid_values(self, name: str, param: str) -> list[Any] | None:
        grid = self.spec.sampler.grid
        return grid.get(name, grid.get(param)) if self.spec.sampler.name == GRID_SAMPLER else None

    def _suggest(self, trial: TrialLike, name: str, param: str, bounds: ParamRange, integer: bool = False) -> Any:
        """One parameter: a grid value, exactly 0 (``zero``), or a draw from its range."""
        grid = self._grid_values(name, param)
        if grid is not None:
            return trial.suggest_categorical(name, grid)
        if bounds.zero and trial.suggest_categorical(name + ZERO_SUFFIX, ZERO_CHOICES):
            return 0.0
        if integer:
            return trial.suggest_int(name, int(bounds.low), int(bounds.high), log=bounds.log)
        return trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)

    def _suggest_params(self, trial: TrialLike, prefix: str, rule: str) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for param in SEARCHED_PARAMS.get(rule, ()):
            params[param] = self._suggest(trial, f"{prefix}.{param}", param, self.spec.search_space.ranges[param])
        if RULES[rule].bounds:  # z^B: the data's input range, not searched
            params = {"low": self.spec.data.input_low, "high": self.spec.data.input_high}
        return params

    def _method_params(self) -> dict[str, ParamRange]:
        """The baseline method's searched parameters and their ranges."""
        return {n: v for n, v in self.spec.search_space.method_params.items() if isinstance(v, ParamRange)}

    def _sample_method(self, trial: TrialLike) -> ExplainerConfig:
        space = self.spec.search_space
        integer = {p.name for p in METHODS[space.method].numeric() if p.integer}
        searched = self._method_params()
        params = {
            param: self._suggest(trial, f"{METHOD_PREFIX}.{param}", param, value, param in integer)
            if param in searched
            else value
            for param, value in space.method_params.items()
        }
        params = trial_params(space.method, params, self.spec.seed, self.spec.data.input_low)
        return ExplainerConfig(model=self.model_ref, canonizer=self.canonizer, method=space.method, params=params)

    def sample(self, trial: TrialLike) -> ExplainerConfig:
        """The config of one trial (works with any object offering Optuna's ``suggest_*``)."""
        if self.spec.search_space.method != LRP:
            return self._sample_method(trial)
        groups = []
        for name, layers in self.groups.items():
            rule = trial.suggest_categorical(f"{name}.rule", self.spec.search_space.groups[name].rules)
            groups.append(
                GroupRule(name=name, layers=layers, rule=rule, params=self._suggest_params(trial, name, rule))
            )
        choice = trial.suggest_categorical("first_layer.rule", self.spec.search_space.first_layer)
        first = None
        if choice != FIRST_LAYER_GROUP:
            params = self._suggest_params(trial, "first_layer", choice)
            first = FirstLayerRule(rule=choice, params=params, layer=self.first_layer)
        return ExplainerConfig(model=self.model_ref, canonizer=self.canonizer, groups=groups, first_layer=first)

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's grid values, for ``optuna.samplers.GridSampler``."""
        space: dict[str, list[Any]] = {}
        if self.spec.search_space.method != LRP:
            for param in self._method_params():
                values = self._grid_values(f"{METHOD_PREFIX}.{param}", param)
                if values is None:
                    raise InputError(f"sampler.grid: give values for {param!r} (or '{METHOD_PREFIX}.{param}')")
                space[f"{METHOD_PREFIX}.{param}"] = values
            return space
        rule_lists: dict[str, list[str]] = {name: list(g.rules) for name, g in self.spec.search_space.groups.items()}
        rule_lists["first_layer"] = list(self.spec.search_space.first_layer)
        for prefix, rules in rule_lists.items():
            space[f"{prefix}.rule"] = list(rules)
            for rule in rules:
                for param in SEARCHED_PARAMS.get(rule, ()):
                    values = self._grid_values(f"{prefix}.{param}", param)
                    if values is None:
                        raise InputError(f"sampler.grid: give values for {param!r} (or '{prefix}.{param}')")
                    space[f"{prefix}.{param}"] = values
        return space

    # -- seeds ------------------------------------------------------------------------------
    def seed_params(self, seed: str) -> tuple[dict[str, Any] | None, str]:
        """Optuna params that reproduce zennit composite ``seed``, or ``None`` and why not."""
        if self.spec.search_space.method != LRP:
            return None, f"search_space.method is {self.spec.search_space.method!r}, not LRP"
        conv_rule, conv_params, dense_rule, dense_params, first = _SEED_RECIPES[seed]
        params: dict[str, Any] = {}
        for name in self.groups:
            rule, rule_params = (dense_rule, dense_params) if name in self.dense_groups else (conv_rule, conv_params)
            if rule not in self.spec.search_space.groups[name].rules:
                return None, f"group {name!r} does not offer rule {rule!r}"
            params[f"{name}.rule"] = rule
            for param, value in rule_params.items():
                if not self._offers(f"{name}.{param}", param, value):
                    return None, f"{name}.{param}={value} is outside the search space"
                params.update(self._fixed(f"{name}.{param}", param, value))
        if first not in self.spec.search_space.first_layer:
            return None, f"first_layer does not offer {first!r}"
        params["first_layer.rule"] = first
        return params, ""

    def _offers(self, name: str, param: str, value: float) -> bool:
        grid = self._grid_values(name, param)
        if grid is not None:
            return value in grid
        bounds = self.spec.search_space.ranges[param]
        return bounds.low <= value <= bounds.high or (bounds.zero and value == 0)

    def _fixed(self, name: str, param: str, value: float) -> dict[str, Any]:
        """The Optuna params that make ``param`` equal ``value`` (an offered one), zero choice included."""
        if self._grid_values(name, param) is not None or not self.spec.search_space.ranges[param].zero:
            return {name: value}
        return {name + ZERO_SUFFIX: True} if value == 0 else {name + ZERO_SUFFIX: False, name: value}
