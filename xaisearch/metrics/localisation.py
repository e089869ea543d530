"""Localisation: how much relevance falls on the ground-truth object (Arras et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.pooling import Pooling, mask_2d, pool_channels


@dataclass(frozen=True)
class RelevanceMassAccuracy(Metric):
    """RMA = Σ_{p∈GT} R_p / Σ_p R_p on the pooled, non-negative map R.

    Pinned: channels pooled with ``pooling`` (default ``pos_sum``, Arras' ``sum,pos``: negative
    evidence is not "mass"); a signed pooling is refused since the ratio would leave [0, 1].
    NaN for an empty mask or an all-zero map. Chance level (a constant map) is |GT| / N.
    """

    name = "relevance_mass_accuracy"
    category = "localisation"
    direction = "higher"
    needs_mask = True

    pooling: Pooling = "pos_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = _non_negative(pool_channels(ctx.a, self.pooling), self.pooling).flatten(1)
        mask = mask_2d(ctx.s).flatten(1)
        total = relevance.sum(1)
        inside = (relevance * mask).sum(1)
        score = inside / total
        return score.masked_fill((total <= 0) | (mask.sum(1) == 0), float("nan"))


@dataclass(frozen=True)
class RelevanceRankAccuracy(Metric):
    """RRA = |top-K pixels ∩ GT| / K with K = |GT|, on the pooled map.

    Pinned: ties at the K-th value are broken at random *in expectation* (each tied pixel counts
    with probability of being chosen), so a constant map scores exactly the chance level |GT|/N
    instead of depending on pixel order. NaN for an empty mask.
    """

    name = "relevance_rank_accuracy"
    category = "localisation"
    direction = "higher"
    needs_mask = True

    pooling: Pooling = "pos_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = pool_channels(ctx.a, self.pooling).flatten(1).double()
        mask = mask_2d(ctx.s).flatten(1)
        k = mask.sum(1)
        ordered = relevance.sort(dim=1, descending=True).values
        kth = ordered.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
        above = relevance > kth
        tied = relevance == kth
        hits_above = (above & mask).sum(1).double()
        tied_count = tied.sum(1).double()
        tied_inside = (tied & mask).sum(1).double()
        expected_hits = hits_above + (k.double() - above.sum(1).double()) * tied_inside / tied_count
        score = (expected_hits / k.double()).to(ctx.a.dtype)
        return score.masked_fill(k == 0, float("nan"))


def _non_negative(relevance: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "sum":
        raise ValueError("relevance mass needs a non-negative pooling (pos_sum, sum_abs, abs_sum, ...), not 'sum'")
    return relevance
