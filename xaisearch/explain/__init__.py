"""Explainers as data: methods, rules, layer groups, configs, and the zennit objects built from them.

Names are imported on first use (``xaisearch.lazy``): ``xaisearch.explain.rules``, which study
files are validated against, stays free of torch and zennit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xaisearch.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "baselines": ("METHODS", "method_names", "normalise_method"),
        "config": ("ExplainerConfig", "FirstLayerRule", "GroupRule", "load_config"),
        "from_config": ("attributor_from_config", "composite_from_config", "model_from_config"),
        "methods": ("attribute", "attribute_with", "build_attributor", "build_composite", "explain"),
        "rules": ("RULES", "RuleError", "make_rule", "normalise_rule", "rule_names"),
    },
)

if TYPE_CHECKING:
    from xaisearch.explain.baselines import METHODS, method_names, normalise_method
    from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule, load_config
    from xaisearch.explain.from_config import attributor_from_config, composite_from_config, model_from_config
    from xaisearch.explain.methods import attribute, attribute_with, build_attributor, build_composite, explain
    from xaisearch.explain.rules import RULES, RuleError, make_rule, normalise_rule, rule_names
