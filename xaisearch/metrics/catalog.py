"""What a study file may name about metrics, importable without torch.

The one definition of a score's ``Direction`` and a metric's ``Category``, and the ``METRICS``
registry. Each built-in metric is *declared* here with the module that registers it, so that
validating a study file lists the names without importing torch; the first ``METRICS.get(name)``
imports that module, whose ``@METRICS.register()`` fills the entry in. A test checks that the
declarations and the registrations agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from xaisearch.registry import Registry

if TYPE_CHECKING:
    from xaisearch.metrics.base import Metric

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "localisation", "robustness", "complexity", "randomisation", "axiomatic"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
CATEGORIES: tuple[Category, ...] = get_args(Category)

METRICS: Registry[type[Metric]] = Registry("metric")
"""Every metric class by name (its ``name`` attribute)."""

_BUILT_IN: dict[str, tuple[str, ...]] = {
    "xaisearch.metrics.axiomatic": ("completeness",),
    "xaisearch.metrics.complexity": ("complexity", "effective_complexity", "sparseness"),
    "xaisearch.metrics.faithfulness": (
        "deletion",
        "faithfulness_correlation",
        "insertion",
        "pixel_flipping",
        "region_perturbation",
    ),
    "xaisearch.metrics.localisation": (
        "attribution_localisation",
        "auc",
        "pointing_game",
        "relevance_mass_accuracy",
        "relevance_rank_accuracy",
        "top_k_intersection",
    ),
    "xaisearch.metrics.randomisation": ("efficient_mprt", "mprt", "random_logit"),
    "xaisearch.metrics.robustness": ("avg_sensitivity", "local_lipschitz", "max_sensitivity"),
}
CATEGORY_MODULES: tuple[str, ...] = tuple(_BUILT_IN)
for _module, _names in _BUILT_IN.items():
    for _name in _names:
        METRICS.declare(_name, _module)
