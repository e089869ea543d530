"""A study's explanation method: LRP (rules per layer group, the default) or one baseline whose
parameters are searched or fixed.

In the study file::

    search_space:
      method: smoothgrad
      method_params:
        noise_level: {low: 0.01, high: 0.5, log: true}   # searched: Optuna parameter 'method.noise_level'
        n_samples: 16                                     # fixed in every trial

A range (``low``/``high``/``log``/``zero``, as ``ranges`` of the rules) makes a parameter an
Optuna parameter ``method.<name>`` (integers are sampled as integers); a value fixes it. A
searchable parameter the file leaves out is searched over its default range
(``explain.baselines.METHODS``); the others keep their defaults, except two that come from the
study: SmoothGrad's ``seed`` is the study's ``seed`` (every trial draws the same noise, so
trials differ only by their parameters), and the ``black`` baseline's ``input_low`` is the data's.
A baseline method has no layer groups, first-layer rules, rule ranges or LRP seed composites.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ValidationError, ValidationInfo

from xaisearch.explain.baselines import LRP, METHODS, MethodParam, normalise_method, unknown_method
from xaisearch.explain.rules import RuleError

if TYPE_CHECKING:
    from xaisearch.spec.study import ParamRange

METHOD_PREFIX = "method"  # Optuna parameter names: ``method.noise_level``
_LRP_ONLY = ("layer_groups", "groups", "first_layer", "ranges")


def _known_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(unknown_method(name))
    return name


MethodName = Annotated[str, AfterValidator(_known_method)]  # a name in ``explain.baselines.METHODS``


def check_lrp_fields(space: Any) -> None:
    """LRP needs its layer groups; a baseline method takes none of LRP's fields (a search space)."""
    if space.method == LRP:
        if "groups" not in space.model_fields_set:
            raise ValueError("groups: method 'lrp' needs its layer groups' rules (e.g. low: {rules: [gamma, zplus]})")
        return
    defaults = {name: type(space).model_fields[name].get_default(call_default_factory=True) for name in _LRP_ONLY}
    changed = [name for name in _LRP_ONLY if getattr(space, name) != defaults[name]]
    if changed:  # compared with the defaults, so the stored form of a baseline study reads back
        raise ValueError(f"{changed[0]}: holds LRP rules, which method {space.method!r} has none of; remove it")


def baseline_seeds(study: Any) -> None:
    """A baseline method's study has no LRP seed composites: ``seeds`` defaults to none there."""
    method = study.search_space.method
    if method == LRP:
        return
    if "seeds" in study.model_fields_set and study.seeds:
        raise ValueError(f"seeds: these are LRP composites, and method {method!r} is not LRP; remove seeds")
    study.seeds = []


def method_space(method_params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """``method_params`` checked against the method: a range per searched parameter (``ParamRange``,
    default ranges added), a legal value per fixed one; every problem names the parameter."""
    from xaisearch.spec.study import ParamRange

    method = info.data.get("method")
    if method is None:  # the method itself was refused: that error is reported
        return method_params
    definition = METHODS[method]
    if method == LRP:
        if method_params:
            raise ValueError("method 'lrp' searches its rules' parameters under ranges; remove method_params")
        return method_params
    names = [param.name for param in definition.params]
    space: dict[str, Any] = {
        p.name: ParamRange(low=p.search.low, high=p.search.high, log=p.search.log)
        for p in definition.searched()
        if p.search is not None and p.name not in method_params  # searched over its default range
    }
    numeric = {param.name: param for param in definition.numeric()}
    for name, value in method_params.items():
        if name not in names:
            known = f"its parameters are {names}" if names else "it has none"
            raise ValueError(f"{name}: method {method!r} has no such parameter; {known}")
        if isinstance(value, dict):
            space[name] = _range(name, value, numeric.get(name))
        else:
            space[name] = value
    lows = {name: _low(value, numeric.get(name)) for name, value in space.items()}
    try:  # fixed values (and each range's low) as one trial would have them
        normalise_method(method, trial_params(method, lows, 0, 0.0))
    except RuleError as error:
        raise ValueError(str(error)) from None
    return space


def _low(value: Any, param: MethodParam | None) -> Any:
    """A fixed value as it is, a range as its low end (an integer for an integer parameter)."""
    from xaisearch.spec.study import ParamRange

    if not isinstance(value, ParamRange):
        return value
    return int(value.low) if param is not None and param.integer else value.low


def _range(name: str, value: dict[str, Any], param: MethodParam | None) -> ParamRange:
    """``value`` as a search range of ``param``, both ends (and 0, with ``zero``) legal values."""
    from xaisearch.spec.study import ParamRange

    if param is None:
        raise ValueError(f"{name}: not a number, so it cannot be searched; give one value")
    try:
        bounds = ParamRange.model_validate(value, strict=True)
    except ValidationError as error:  # as field_errors words it: a misspelt bound first
        first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        where = "".join(f".{part}" for part in first["loc"])
        fields = {"missing": "is required but missing", "extra_forbidden": "is not a known field"}
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] in fields:
            message = f"{fields[first['type']]} (a range has low, high, log, zero)"
        raise ValueError(f"{name}{where}: {message}") from None
    ends = [bounds.low, bounds.high] + ([0.0] if bounds.zero else [])
    for end in ends:
        if param.integer and not float(end).is_integer():
            raise ValueError(f"{name}: {param.name} is an integer; give integer bounds, not {end!r}")
        problem = param.problem(int(end) if param.integer else end)
        if problem is not None:
            raise ValueError(f"{name}: {problem}" + (" (from zero: true)" if end == 0.0 and bounds.zero else ""))
    return bounds


def trial_params(method: str, params: dict[str, Any], seed: int, input_low: Any) -> dict[str, Any]:
    """A trial's method parameters with what the study decides: SmoothGrad's ``seed`` (the study's),
    the ``black`` baseline's ``input_low`` (the data's), unless the study file fixes them."""
    completed = dict(params)
    if method == "smoothgrad":
        completed.setdefault("seed", seed)
    if method == "integrated_gradients" and completed.get("baseline") == "black":
        completed.setdefault("input_low", input_low)
    return completed
