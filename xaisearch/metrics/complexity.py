"""Complexity: how concentrated an explanation is."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.parameters import Positive
from xaisearch.metrics.pooling import Pooling, pool_channels


@METRICS.register()
@dataclass(frozen=True)
class Sparseness(Metric):
    """Gini index of the pooled non-negative per-pixel relevance (Chalasani et al. 2020).

    G = Σ_i (2i − n − 1)·r_(i) / (n·Σ r), with r sorted ascending and i = 1..n: 0 for a
    constant map, (n−1)/n for a single relevant pixel. Pinned: pixels pooled with ``abs_sum``
    (Σ_c |a_c|). NaN for an all-zero map.
    """

    name = "sparseness"
    category = "complexity"
    direction = "higher"

    pooling: Pooling = "abs_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = _non_negative_pixels(ctx.a, self.pooling, self.name)
        n = relevance.shape[1]
        ordered = relevance.sort(dim=1).values
        rank = torch.arange(1, n + 1, device=relevance.device, dtype=relevance.dtype)
        total = ordered.sum(1)
        gini = ((2 * rank - n - 1) * ordered).sum(1) / (n * total)
        return gini.masked_fill(total <= 0, float("nan")).to(ctx.a.dtype)


@METRICS.register()
@dataclass(frozen=True)
class Complexity(Metric):
    """Entropy of the relevance distribution p = r / Σ r over pixels (Bhatt et al. 2020).

    H = −Σ_i p_i · ln p_i (nats, 0·ln 0 = 0): 0 for a single relevant pixel, ln N for a constant
    map of N pixels. Pinned: pixels pooled with ``abs_sum`` (Σ_c |a_c|; Quantus 0.6.0 takes each
    channel value as a feature and adds 1e-12 inside the log). NaN for an all-zero map. Lower is
    better.
    """

    name = "complexity"
    category = "complexity"
    direction = "lower"

    pooling: Pooling = "abs_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = _non_negative_pixels(ctx.a, self.pooling, self.name)
        total = relevance.sum(1, keepdim=True)
        p = relevance / total
        entropy = -torch.special.xlogy(p, p).sum(1)
        return entropy.masked_fill(total.squeeze(1) <= 0, float("nan")).to(ctx.a.dtype)


@METRICS.register()
@dataclass(frozen=True)
class EffectiveComplexity(Metric):
    """Number of pixels whose relevance exceeds ``eps`` (Nguyen & Martínez 2020; Quantus ``EffectiveComplexity``).

    A count, as Quantus (not a fraction): pixels with r_i > eps, r pooled with ``abs_sum``.
    With ``normalise=True`` (default) r is first divided by the sample's own max (so ``eps`` is
    relative and the count does not change with the map's scale); Quantus' default divides by
    the max over the whole batch. An all-zero map counts 0. Lower is better.
    """

    name = "effective_complexity"
    category = "complexity"
    direction = "lower"

    eps: Positive = 1e-5
    normalise: bool = True
    pooling: Pooling = "abs_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = _non_negative_pixels(ctx.a, self.pooling, self.name)
        if self.normalise:
            relevance = relevance / relevance.amax(1, keepdim=True).clamp(min=torch.finfo(relevance.dtype).tiny)
        return (relevance > self.eps).sum(1).to(ctx.a.dtype)


def _non_negative_pixels(a: torch.Tensor, pooling: Pooling, name: str) -> torch.Tensor:
    relevance = pool_channels(a, pooling).flatten(1).double()
    if bool((relevance < 0).any()):
        raise ValueError(f"{name} needs a non-negative pooling (abs_sum, sum_abs, ...), not {pooling!r}")
    return relevance
