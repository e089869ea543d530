"""Axiomatic: properties an attribution should satisfy by construction."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaisearch.metrics.base import Metric, MetricContext, generator
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.faithfulness import BaselineField, clean_scores, hashable
from xaisearch.metrics.parameters import Seed
from xaisearch.metrics.perturbation import baseline_image, target_scores


@METRICS.register()
@dataclass(frozen=True)
class Completeness(Metric):
    """Completeness (Sundararajan et al. 2017): |Σ_i a_i − (f(x) − f(b))| per sample.

    The absolute gap between the total attribution (all channels, signed) and the change of the
    explained output from the baseline image b to x; 0 for a complete map, lower is better.
    Quantus returns the boolean ``Σa == f(x) − f(b)``, an exact float comparison that rounding
    makes False for complete maps too. Pinned: logits (``softmax=False``, as Quantus), baseline
    ``zero`` (the all-zero input: the dataset mean after normalisation; Quantus' default is
    ``black``, the sample minimum). f(b) does not depend on the explanation and is cached.
    """

    name = "completeness"
    category = "axiomatic"
    direction = "lower"
    needs_model = True
    forwards_per_sample = 2

    baseline: BaselineField = "zero"
    softmax: bool = False
    seed: Seed = 0

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        key = ("completeness.baseline_scores", hashable(self.baseline), self.softmax, self.seed)
        if key not in ctx.cache:
            reference = baseline_image(ctx.x, self.baseline, generator(self.seed)).expand_as(ctx.x)
            with torch.no_grad():
                ctx.cache[key] = target_scores(ctx.required_model, reference, ctx.y, self.softmax)
        change = clean_scores(ctx, self.softmax) - ctx.cache[key]
        return (ctx.a.flatten(1).double().sum(1) - change.double()).abs().to(ctx.a.dtype)
