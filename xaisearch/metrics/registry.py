"""Metric names → classes. Adding a metric is one module plus one line here."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.complexity import Sparseness
from xaisearch.metrics.faithfulness import PixelFlipping
from xaisearch.metrics.localisation import RelevanceMassAccuracy, RelevanceRankAccuracy

METRICS: dict[str, type[Metric]] = {
    cls.name: cls for cls in (PixelFlipping, RelevanceMassAccuracy, RelevanceRankAccuracy, Sparseness)
}


def available() -> list[str]:
    """Names accepted by ``make_metric``, ``evaluate`` and the study file's ``metrics``."""
    return sorted(METRICS)


def make_metric(name: str, **params: Any) -> Metric:
    """The metric ``name`` with ``params``; unknown names or parameters raise ``ValueError``."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {available()}")
    cls = METRICS[name]
    try:
        return cls(**params)
    except TypeError as error:
        known = sorted(f.name for f in fields(cls))
        raise ValueError(f"metric {name!r}: bad parameters {sorted(params)}; its parameters are {known}") from error


def evaluate(
    name: str,
    model: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    s: torch.Tensor | None = None,
    **params: Any,
) -> torch.Tensor:
    """One score per sample (``Tensor[B]``) of metric ``name`` for attributions ``a`` of ``x``."""
    metric = make_metric(name, **params)
    if s is not None and s.dim() == 3:
        s = s.unsqueeze(1)
    return metric(MetricContext(x=x, y=y, a=a, s=s, model=model))
