"""Quantitative evaluation of explanations: one score per sample, batched in torch."""

from xaisearch.metrics.axiomatic import Completeness
from xaisearch.metrics.base import (
    METRICS,
    Explainer,
    Metric,
    MetricContext,
    ModelBoundExplainer,
    ModelExplainer,
    make_explainer,
)
from xaisearch.metrics.complexity import Complexity, EffectiveComplexity, Sparseness
from xaisearch.metrics.faithfulness import (
    Deletion,
    FaithfulnessCorrelation,
    Insertion,
    PixelFlipping,
    RegionPerturbation,
)
from xaisearch.metrics.localisation import (
    AreaUnderCurve,
    AttributionLocalisation,
    PointingGame,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    TopKIntersection,
)
from xaisearch.metrics.pooling import pool_channels
from xaisearch.metrics.randomisation import MPRT, EfficientMPRT, RandomLogit
from xaisearch.metrics.registry import available, evaluate, make_metric
from xaisearch.metrics.robustness import AvgSensitivity, LocalLipschitz, MaxSensitivity
from xaisearch.metrics.suite import MetricSuite, WeightedMetric, suite_entries

__all__ = [
    "METRICS",
    "AreaUnderCurve",
    "AttributionLocalisation",
    "AvgSensitivity",
    "EfficientMPRT",
    "LocalLipschitz",
    "MPRT",
    "MaxSensitivity",
    "MetricSuite",
    "Explainer",
    "ModelBoundExplainer",
    "ModelExplainer",
    "PointingGame",
    "RandomLogit",
    "TopKIntersection",
    "WeightedMetric",
    "make_explainer",
    "suite_entries",
    "Completeness",
    "Complexity",
    "Deletion",
    "EffectiveComplexity",
    "FaithfulnessCorrelation",
    "Insertion",
    "Metric",
    "MetricContext",
    "PixelFlipping",
    "RegionPerturbation",
    "RelevanceMassAccuracy",
    "RelevanceRankAccuracy",
    "Sparseness",
    "available",
    "evaluate",
    "make_metric",
    "pool_channels",
]
