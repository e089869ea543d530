"""Explanation methods by name: LRP and the gradient-family baselines, with their parameters.

As ``explain.rules`` is for rules, this is the one table of methods: the config's validation
(``ExplainerConfig.params``), the attributor builder (``explain.methods.build_attributor``) and
the study's method search (``spec.methods``, ``search.space``) all read ``METHODS``. It imports
neither torch nor zennit, so a study file is validated without them.

| method | zennit | ``params`` |
|---|---|---|
| ``lrp`` | ``Gradient`` + the composite of ``groups`` | – (the rules' parameters live in ``groups``) |
| ``gradient`` | ``Gradient`` | – |
| ``input_x_gradient`` | ``Gradient``, times the input (Shrikumar et al. 2016) | – |
| ``smoothgrad`` | ``SmoothGrad``, seeded (Smilkov et al. 2017) | ``noise_level``, ``n_samples``, ``seed`` |
| ``integrated_gradients`` | ``IntegratedGradients`` (Sundararajan et al.) | ``baseline``, ``steps``, ``input_low`` |
| ``guided_backprop`` | ``Gradient`` + ``GuidedBackprop`` (Springenberg et al. 2015) | – |
| ``excitation_backprop`` | ``Gradient`` + ``ExcitationBackprop`` (Zhang et al. 2016) | – |

``noise_level`` (≥ 0, default 0.1) is zennit's: the noise's standard deviation over each
sample's value range (max − min). ``n_samples`` (≥ 1, default 20) counts zennit's iterations, the
last of which is noise-free, so one sample is the plain gradient; ``seed`` (default 0) seeds the
noise. ``steps`` (≥ 1, default 20) are the points of integrated gradients' Riemann sum;
``baseline`` is ``zero`` (zennit's default), ``mean`` (each image's mean per channel), ``black``
(the data's lowest value, ``input_low``: a number or one per channel), or a constant image given
as a number or one number per channel.

Every method keeps the config's canonizer. Canonization keeps the function, so the gradient
methods (all but ``lrp`` and ``excitation_backprop``, whose ``ZPlus`` reads the folded weights)
give the same maps with and without it, up to float error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from xaisearch.explain.rules import RuleError, SearchRange

LRP = "lrp"
Attributor = Literal["gradient", "input_x_gradient", "smoothgrad", "integrated_gradients"]
CompositeKind = Literal["rules", "none", "guided_backprop", "excitation_backprop"]
BASELINE_NAMES = ("zero", "mean", "black")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MethodParam:
    """One numeric parameter of a method: default, smallest legal value, integer or not, search range."""

    name: str
    default: float
    minimum: float
    integer: bool = False
    search: SearchRange | None = None  # None: never searched unless a study file gives a range

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is illegal, or ``None``."""
        kind = "an integer" if self.integer else "a number"
        legal = isinstance(value, int) if self.integer else value == value  # NaN is no number
        if not _is_number(value) or not legal or value < self.minimum or value == float("inf"):
            return f"{self.name} must be {kind} >= {self.minimum:g}, got {value!r}"
        return None


@dataclass(frozen=True)
class OtherParam:
    """A parameter that is not one number (``baseline``, ``input_low``); checked by the method's ``complete``."""

    name: str
    default: Any = None  # None: no default, the parameter is left out unless given


@dataclass(frozen=True)
class MethodDefinition:
    """A method: its name, the zennit attributor and composite it runs with, and its parameters."""

    name: str
    attributor: Attributor
    composite: CompositeKind
    params: tuple[MethodParam | OtherParam, ...] = ()
    complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # checks across parameters

    def numeric(self) -> tuple[MethodParam, ...]:
        return tuple(p for p in self.params if isinstance(p, MethodParam))

    def searched(self) -> tuple[MethodParam, ...]:
        """The parameters a study searches unless its file fixes them."""
        return tuple(p for p in self.numeric() if p.search is not None)


def _numbers_or_number(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(_is_number(v) and v == v and abs(v) != float("inf") for v in values)


def _integrated_gradients(params: dict[str, Any]) -> dict[str, Any]:
    baseline = params["baseline"]
    if not (baseline in BASELINE_NAMES or _numbers_or_number(baseline)):
        raise RuleError(
            f"baseline must be one of {list(BASELINE_NAMES)}, a number or one number per channel, got {baseline!r}"
        )
    if baseline == "black" and "input_low" not in params:
        raise RuleError(
            "baseline 'black' needs input_low, the data's lowest input value (a number or one per channel, "
            "e.g. 0.0 for images in [0, 1])"
        )
    if baseline != "black" and "input_low" in params:
        raise RuleError(f"input_low only applies to baseline 'black', not {baseline!r}; remove it")
    if "input_low" in params and not _numbers_or_number(params["input_low"]):
        raise RuleError(f"input_low must be a number or one number per channel, got {params['input_low']!r}")
    return params


METHODS: dict[str, MethodDefinition] = {
    method.name: method
    for method in (
        MethodDefinition(LRP, "gradient", "rules"),
        MethodDefinition("gradient", "gradient", "none"),
        MethodDefinition("input_x_gradient", "input_x_gradient", "none"),
        MethodDefinition(
            "smoothgrad",
            "smoothgrad",
            "none",
            (
                MethodParam("noise_level", 0.1, 0.0, search=SearchRange(0.01, 0.5)),
                MethodParam("n_samples", 20, 1, integer=True),
                MethodParam("seed", 0, 0, integer=True),
            ),
        ),
        MethodDefinition(
            "integrated_gradients",
            "integrated_gradients",
            "none",
            (OtherParam("baseline", "zero"), MethodParam("steps", 20, 1, integer=True), OtherParam("input_low")),
            complete=_integrated_gradients,
        ),
        MethodDefinition("guided_backprop", "gradient", "guided_backprop"),
        MethodDefinition("excitation_backprop", "gradient", "excitation_backprop"),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def unknown_method(name: str) -> str:
    return f"unknown method {name!r}; choose one of {method_names()}"


def normalise_method(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validated parameters of ``method`` with defaults filled in; raises ``RuleError`` naming the
    method and the parameter otherwise."""
    if method not in METHODS:
        raise RuleError(unknown_method(method))
    definition = METHODS[method]
    given = dict(params or {})
    names = [p.name for p in definition.params]
    unknown = sorted(set(given) - set(names))
    if unknown:
        known = f"its parameters are {names}" if names else "it takes none (leave params out)"
        raise RuleError(f"method {method!r} has no parameter {unknown[0]!r}; {known}")
    defaults = {p.name: p.default for p in definition.params if p.default is not None}
    merged = defaults | given
    try:
        for param in definition.numeric():
            problem = param.problem(merged[param.name])
            if problem is not None:
                raise RuleError(problem)
        return definition.complete(merged) if definition.complete is not None else merged
    except RuleError as error:
        raise RuleError(f"method {method!r}: {error}") from None
