"""LRP rules by name: the one table of rules, their parameters, bounds and search ranges.

zennit keeps rule hyperparameters in closures; here a rule is ``(name, params)`` first, so it can
be validated, searched over, written to JSON and compared, and the zennit object is built from
it on demand. ``RULES`` is the only place a rule is described: the study file's validation
(``spec``), the composite builder (``make_rule``) and the search space (``search.space``) all read
it. This module imports torch and zennit only inside ``make_rule``, so a study file is
validated without them. Defaults follow zennit 0.5.1 (stabilisers 1e-6).

| name | zennit rule | parameters |
|---|---|---|
| ``epsilon`` | ``Epsilon`` | ``epsilon`` > 0 (searched) |
| ``gamma`` | ``Gamma`` | ``gamma`` ≥ 0 (searched; 0 is LRP-0 with a stabiliser) |
| ``zplus`` | ``ZPlus`` | – |
| ``alpha_beta`` | ``AlphaBeta`` | ``alpha`` ≥ 1 (searched); ``beta = alpha − 1`` (conservation) |
| ``flat`` | ``Flat`` | – |
| ``zbox`` | ``ZBox`` | ``low`` < ``high``: input bounds, scalars or one value per channel |
| ``pass`` | ``Pass`` | – (relevance passes unchanged: only for shape-preserving layers) |

Every rule also takes ``stabilizer`` (default 1e-6) except ``pass`` and ``epsilon`` (whose
``epsilon`` is its stabiliser). ``alpha`` is rounded to a multiple of 2⁻²⁰ so that
``alpha − beta == 1`` holds exactly in floating point, as zennit requires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_STABILIZER = 1e-6
_ALPHA_GRID = 2**20


class RuleError(ValueError):
    """A rule name or parameter that zennit cannot use; the message names it and the fix."""


@dataclass(frozen=True)
class SearchRange:
    """The range a study searches a parameter over unless its file says otherwise."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class RuleParam:
    """One numeric parameter: its default, its smallest legal value, and whether it is searched."""

    name: str
    default: float
    minimum: float
    minimum_allowed: bool = True  # False: the minimum itself is illegal (epsilon > 0)
    search: SearchRange | None = None  # None: fixed, never an Optuna parameter
    why: str = ""  # said when the minimum is broken

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is illegal, or ``None``."""
        # ">= 0" admits the bound; "a number > 0" (a stabiliser) does not
        bound = f">= {self.minimum:g}" if self.minimum_allowed else f"a number > {self.minimum:g}"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or value < self.minimum or (value == self.minimum and not self.minimum_allowed):
            return f"{self.name} must be {bound}, got {value!r}{self.why}"
        return None


@dataclass(frozen=True)
class RuleDefinition:
    """A rule: its name, zennit class, numeric parameters and where it may be used."""

    name: str
    zennit_class: str
    params: tuple[RuleParam, ...] = ()
    stabilizer: bool = True  # takes zennit's ``stabilizer``
    bounds: bool = False  # takes ``low``/``high`` input bounds (z^B)
    any_layer: bool = True  # False: only shape-preserving layers (never the first layer)
    complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # rule-specific completion

    def allowed(self) -> set[str]:
        names = {p.name for p in self.params} | ({"stabilizer"} if self.stabilizer else set())
        names |= {"low", "high"} if self.bounds else set()
        return names | ({"beta"} if self.name == "alpha_beta" else set())

    def searched(self) -> tuple[RuleParam, ...]:
        return tuple(p for p in self.params if p.search is not None)


def _alpha_beta(params: dict[str, Any]) -> dict[str, Any]:
    alpha = float(params["alpha"])
    beta = float(params.get("beta", alpha - 1.0))
    if abs(alpha - beta - 1.0) > 1e-9:
        raise RuleError(f"rule 'alpha_beta' needs beta = alpha - 1, got alpha={alpha}, beta={beta}")
    # zennit demands alpha - beta == 1 exactly: a multiple of 2**-20 makes alpha - 1 exact
    alpha = round(alpha * _ALPHA_GRID) / _ALPHA_GRID
    return {**params, "alpha": alpha, "beta": alpha - 1.0}


def _ordered_bounds(params: dict[str, Any]) -> dict[str, Any]:
    low, high = params["low"], params["high"]
    lows, highs = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (low, high))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in lows + highs)
    if not numeric or len(lows) != len(highs) or not all(lo < hi for lo, hi in zip(lows, highs, strict=True)):
        raise RuleError(f"rule 'zbox' needs low < high (per channel), got low={low}, high={high}")
    return params


RULES: dict[str, RuleDefinition] = {
    rule.name: rule
    for rule in (
        RuleDefinition(
            "epsilon",
            "Epsilon",
            (RuleParam("epsilon", 1e-6, 0.0, minimum_allowed=False, search=SearchRange(1e-6, 1.0)),),
            stabilizer=False,
        ),
        RuleDefinition("gamma", "Gamma", (RuleParam("gamma", 0.25, 0.0, search=SearchRange(1e-3, 10.0)),)),
        RuleDefinition("zplus", "ZPlus"),
        RuleDefinition(
            "alpha_beta",
            "AlphaBeta",
            (
                RuleParam(
                    "alpha",
                    2.0,
                    1.0,
                    search=SearchRange(1.0, 3.0, log=False),
                    why=" (alpha >= 1 keeps beta = alpha - 1 >= 0)",
                ),
            ),
            complete=_alpha_beta,
        ),
        RuleDefinition("flat", "Flat"),
        RuleDefinition("zbox", "ZBox", bounds=True, complete=_ordered_bounds),
        RuleDefinition("pass", "Pass", stabilizer=False, any_layer=False),
    )
}
_STABILIZER = RuleParam("stabilizer", DEFAULT_STABILIZER, 0.0, minimum_allowed=False)
_DEFAULT_BOUNDS = {"low": 0.0, "high": 1.0}


def rule_names() -> list[str]:
    return list(RULES)


def first_layer_rules() -> list[str]:
    """Rules the first layer may take (it changes the shape, so not ``pass``)."""
    return [name for name, rule in RULES.items() if rule.any_layer]


def searched_params() -> dict[str, RuleParam]:
    """Every searchable parameter by name (names are unique across rules)."""
    return {p.name: p for rule in RULES.values() for p in rule.searched()}


def unknown_rule(name: str) -> str:
    return f"unknown rule {name!r}; choose one of {rule_names()}"


def normalise_rule(rule: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validated parameters of ``rule`` with defaults filled in; raises ``RuleError`` otherwise."""
    if rule not in RULES:
        raise RuleError(unknown_rule(rule))
    definition = RULES[rule]
    given = dict(params or {})
    unknown = sorted(set(given) - definition.allowed())
    if unknown:
        raise RuleError(
            f"rule {rule!r} has no parameter {unknown[0]!r}; its parameters are {sorted(definition.allowed())}"
        )
    merged = {p.name: p.default for p in definition.params} | (_DEFAULT_BOUNDS if definition.bounds else {}) | given
    checked = definition.params + ((_STABILIZER,) if definition.stabilizer else ())
    if definition.stabilizer:
        merged.setdefault("stabilizer", DEFAULT_STABILIZER)
    for param in checked:
        problem = param.problem(merged[param.name])
        if problem is not None:
            raise RuleError(f"rule {rule!r}: {problem}")
    return definition.complete(merged) if definition.complete is not None else merged


def _bound(value: Any) -> Any:
    """A scalar stays a float; a per-channel list becomes a (1, C, 1, 1) tensor for ZBox."""
    if isinstance(value, (list, tuple)):
        import torch

        return torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
    return float(value)


def make_rule(rule: str, params: Mapping[str, Any] | None = None) -> Any:
    """The zennit hook template for ``(rule, params)``; zennit copies it for each module."""
    from zennit import rules as zrules

    p = normalise_rule(rule, params)
    definition = RULES[rule]
    kwargs: dict[str, Any] = {name: float(value) for name, value in p.items() if name not in ("low", "high")}
    if definition.bounds:
        kwargs |= {"low": _bound(p["low"]), "high": _bound(p["high"])}
    if rule == "alpha_beta":
        kwargs |= {"alpha": p["alpha"], "beta": p["beta"]}
    return getattr(zrules, definition.zennit_class)(**kwargs)
