"""Explainers as data: rules, layer groups, configs, and the zennit composites built from them.

Names are imported on first use (``xaisearch.lazy``): ``xaisearch.explain.rules``, which study
files are validated against, stays free of torch and zennit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xaisearch.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "config": ("ExplainerConfig", "FirstLayerRule", "GroupRule", "load_config"),
        "methods": ("attribute", "build_composite", "explain"),
        "rules": ("RULES", "RuleError", "make_rule", "normalise_rule", "rule_names"),
    },
)

if TYPE_CHECKING:
    from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule, load_config
    from xaisearch.explain.methods import attribute, build_composite, explain
    from xaisearch.explain.rules import RULES, RuleError, make_rule, normalise_rule, rule_names
