"""Explainers as data: rules, layer groups, configs, and the zennit composites built from them."""

from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule, load_config
from xaisearch.explain.methods import attribute, build_composite, explain
from xaisearch.explain.rules import RuleError, make_rule, normalise_rule, rule_names

__all__ = [
    "ExplainerConfig",
    "FirstLayerRule",
    "GroupRule",
    "RuleError",
    "attribute",
    "build_composite",
    "explain",
    "load_config",
    "make_rule",
    "normalise_rule",
    "rule_names",
]
