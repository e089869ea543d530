"""Metric names → classes, read from the one registry ``catalog.METRICS``.

Adding a metric is a class with ``@METRICS.register()`` in its category module, and its name
declared in ``catalog.py`` (what study files are validated against without torch). Importing
this module imports every category module, so every metric is registered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Importing the category modules registers their metrics in ``METRICS`` (``@METRICS.register()``).
from xaisearch.metrics import axiomatic, complexity, faithfulness, localisation, randomisation, robustness
from xaisearch.metrics.base import Metric, MetricContext, make_explainer
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.parameters import validated_params

CATEGORY_MODULES = (axiomatic, complexity, faithfulness, localisation, randomisation, robustness)


def available() -> list[str]:
    """Names accepted by ``make_metric``, ``evaluate`` and the study file's ``metrics``."""
    return METRICS.available()


def make_metric(name: str, **params: Any) -> Metric:
    """The metric ``name`` with ``params``; unknown names, unknown parameters and illegal values
    (``steps: -1``, ``steps: true``) raise ``ValueError`` naming the metric and the parameter."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {available()}")
    cls = METRICS.get(name)
    return cls(**validated_params(name, cls, params))


def evaluate(
    name: str,
    model: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    s: torch.Tensor | None = None,
    explainer: Any = None,
    **params: Any,
) -> torch.Tensor:
    """One score per sample (``Tensor[B]``) of metric ``name`` for attributions ``a`` of ``x``.

    ``explainer`` (for metrics that explain again): an exported composite config (path, dict,
    ``ExplainerConfig``; built with ``xaisearch.composite_from_config`` per model) or a callable
    ``(x, y) -> a`` (a ``ModelExplainer`` when the metric explains randomised models).
    """
    metric = make_metric(name, **params)
    if s is not None and s.dim() == 3:
        s = s.unsqueeze(1)
    return metric(MetricContext(x=x, y=y, a=a, s=s, model=model, explainer=make_explainer(explainer, model)))
