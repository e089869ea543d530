"""Quantitative evaluation of explanations: one score per sample, batched in torch.

Names are imported on first use (``xaisearch.lazy``): ``xaisearch.metrics.catalog``, which study
files are validated against, stays free of torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xaisearch.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "axiomatic": ("Completeness",),
        "base": ("Explainer", "Metric", "MetricContext", "ModelBoundExplainer", "ModelExplainer", "make_explainer"),
        "catalog": ("METRICS",),
        "complexity": ("Complexity", "EffectiveComplexity", "Sparseness"),
        "faithfulness": ("Deletion", "FaithfulnessCorrelation", "Insertion", "PixelFlipping", "RegionPerturbation"),
        "localisation": (
            "AreaUnderCurve",
            "AttributionLocalisation",
            "PointingGame",
            "RelevanceMassAccuracy",
            "RelevanceRankAccuracy",
            "TopKIntersection",
        ),
        "pooling": ("pool_channels",),
        "randomisation": ("MPRT", "EfficientMPRT", "RandomLogit"),
        "registry": ("available", "evaluate", "make_metric"),
        "robustness": ("AvgSensitivity", "LocalLipschitz", "MaxSensitivity"),
        "suite": ("MetricSuite", "WeightedMetric", "suite_entries"),
    },
)

if TYPE_CHECKING:
    from xaisearch.metrics.axiomatic import Completeness
    from xaisearch.metrics.base import (
        Explainer,
        Metric,
        MetricContext,
        ModelBoundExplainer,
        ModelExplainer,
        make_explainer,
    )
    from xaisearch.metrics.catalog import METRICS
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
