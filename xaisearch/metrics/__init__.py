"""Quantitative evaluation of explanations: one score per sample, batched in torch."""

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.complexity import Sparseness
from xaisearch.metrics.faithfulness import PixelFlipping
from xaisearch.metrics.localisation import RelevanceMassAccuracy, RelevanceRankAccuracy
from xaisearch.metrics.pooling import pool_channels
from xaisearch.metrics.registry import available, evaluate, make_metric

__all__ = [
    "Metric",
    "MetricContext",
    "PixelFlipping",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "Sparseness",
    "available",
    "evaluate",
    "make_metric",
    "pool_channels",
]
