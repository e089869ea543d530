"""LRP rules by name, with their parameters as data.

zennit keeps rule hyperparameters in closures; here a rule is ``(name, params)`` first, so it can
be validated, searched over, written to JSON and compared, and the zennit object is built from
it on demand. Defaults follow zennit 0.5.1 (stabilisers 1e-6).

| name | zennit rule | parameters |
|---|---|---|
| ``epsilon`` | ``Epsilon`` | ``epsilon`` > 0 |
| ``gamma`` | ``Gamma`` | ``gamma`` ≥ 0 (0 is LRP-0 with a stabiliser) |
| ``zplus`` | ``ZPlus`` | – |
| ``alpha_beta`` | ``AlphaBeta`` | ``alpha`` ≥ 1; ``beta = alpha − 1`` (conservation) |
| ``flat`` | ``Flat`` | – |
| ``zbox`` | ``ZBox`` | ``low`` < ``high``: input bounds, scalars or one value per channel |
| ``pass`` | ``Pass`` | – (relevance passes unchanged: only for shape-preserving layers) |

Every rule also takes ``stabilizer`` (default 1e-6) except ``pass`` and ``epsilon`` (whose
``epsilon`` is its stabiliser). ``alpha`` is rounded to a multiple of 2⁻²⁰ so that
``alpha − beta == 1`` holds exactly in floating point, as zennit requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

RULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "epsilon": {"epsilon": 1e-6},
    "gamma": {"gamma": 0.25},
    "zplus": {},
    "alpha_beta": {"alpha": 2.0},
    "flat": {},
    "zbox": {"low": 0.0, "high": 1.0},
    "pass": {},
}
NUMERIC_PARAMS: dict[str, tuple[str, ...]] = {rule: tuple(params) for rule, params in RULE_DEFAULTS.items()}
DEFAULT_STABILIZER = 1e-6
_ALPHA_GRID = 2**20


class RuleError(ValueError):
    """A rule name or parameter that zennit cannot use; the message names it and the fix."""


def rule_names() -> list[str]:
    return list(RULE_DEFAULTS)


def normalise_rule(rule: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validated parameters of ``rule`` with defaults filled in; raises ``RuleError`` otherwise."""
    if rule not in RULE_DEFAULTS:
        raise RuleError(f"unknown rule {rule!r}; choose one of {rule_names()}")
    given = dict(params or {})
    allowed = set(RULE_DEFAULTS[rule]) | ({"stabilizer"} if rule not in ("pass", "epsilon") else set())
    if rule == "alpha_beta":
        allowed.add("beta")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise RuleError(f"rule {rule!r} has no parameter {unknown[0]!r}; its parameters are {sorted(allowed)}")
    merged = {**RULE_DEFAULTS[rule], **given}
    if rule not in ("pass", "epsilon"):
        merged.setdefault("stabilizer", DEFAULT_STABILIZER)
        _positive(rule, "stabilizer", merged["stabilizer"])
    if rule == "epsilon":
        _positive(rule, "epsilon", merged["epsilon"])
    elif rule == "gamma":
        if float(merged["gamma"]) < 0:
            raise RuleError(f"rule 'gamma': gamma must be >= 0, got {merged['gamma']}")
    elif rule == "alpha_beta":
        alpha = float(merged["alpha"])
        beta = float(merged.get("beta", alpha - 1.0))
        if alpha < 1 or abs(alpha - beta - 1.0) > 1e-9:
            raise RuleError(f"rule 'alpha_beta' needs alpha >= 1 and beta = alpha - 1, got alpha={alpha}, beta={beta}")
        # zennit demands alpha - beta == 1 exactly: a multiple of 2**-20 makes alpha - 1 exact
        alpha = round(alpha * _ALPHA_GRID) / _ALPHA_GRID
        merged["alpha"], merged["beta"] = alpha, alpha - 1.0
    elif rule == "zbox":
        low = torch.as_tensor(merged["low"], dtype=torch.float64)
        high = torch.as_tensor(merged["high"], dtype=torch.float64)
        if low.shape != high.shape or not bool((low < high).all()):
            raise RuleError(
                f"rule 'zbox' needs low < high (per channel), got low={merged['low']}, high={merged['high']}"
            )
    return merged


def _positive(rule: str, key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise RuleError(f"rule {rule!r}: {key} must be a number > 0, got {value!r}")


def _bound(value: Any) -> float | torch.Tensor:
    """A scalar stays a float; a per-channel list becomes a (1, C, 1, 1) tensor for ZBox."""
    if isinstance(value, (list, tuple)):
        return torch.tensor(value, dtype=torch.float32).view(1, -1, 1, 1)
    return float(value)


def make_rule(rule: str, params: Mapping[str, Any] | None = None):
    """The zennit hook template for ``(rule, params)``; zennit copies it for each module."""
    from zennit import rules as zrules

    p = normalise_rule(rule, params)
    if rule == "epsilon":
        return zrules.Epsilon(epsilon=float(p["epsilon"]))
    if rule == "gamma":
        return zrules.Gamma(gamma=float(p["gamma"]), stabilizer=float(p["stabilizer"]))
    if rule == "zplus":
        return zrules.ZPlus(stabilizer=float(p["stabilizer"]))
    if rule == "alpha_beta":
        return zrules.AlphaBeta(alpha=p["alpha"], beta=p["beta"], stabilizer=float(p["stabilizer"]))
    if rule == "flat":
        return zrules.Flat(stabilizer=float(p["stabilizer"]))
    if rule == "zbox":
        return zrules.ZBox(low=_bound(p["low"]), high=_bound(p["high"]), stabilizer=float(p["stabilizer"]))
    return zrules.Pass()
