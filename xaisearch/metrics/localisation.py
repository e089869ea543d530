"""Localisation: how much relevance falls on the ground-truth object.

Every metric pools channels first (a feature is a pixel, ``pooling.py``), needs a mask, returns
NaN for an empty mask, and costs no model pass. Rank-based ones (RRA, top-k, pointing game, AUC)
share one descending sort per pooled map and scoring call (``ranking.py``) and break ties at
random *in expectation*, so a constant map scores the chance level, never a pixel-order artefact.
Scores do not change under positive rescaling of a map, so no normalisation is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.parameters import Fraction, Positive
from xaisearch.metrics.pooling import Pooling, mask_2d, pool_channels
from xaisearch.metrics.ranking import average_ranks, expected_top_k_hits, pooled, sorted_relevance


@dataclass(frozen=True)
class _Localisation(Metric):
    """What every localisation metric shares: higher is better, a mask is needed, no model pass."""

    category = "localisation"
    direction = "higher"
    needs_mask = True

    def mask(self, ctx: MetricContext) -> torch.Tensor:
        """Check ``ctx``; the B×N ground-truth mask (pixels flattened)."""
        self.check(ctx)
        return mask_2d(ctx.required_mask).flatten(1)

    def ranked(self, ctx: MetricContext, pooling: Pooling) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Check ``ctx``; the B×N pooled map (float64), it sorted descending, and the B×N mask.

        The pooled and sorted maps are computed once per scoring call (``ranking.py``).
        """
        mask = self.mask(ctx)
        return pooled(ctx, pooling), sorted_relevance(ctx, pooling), mask


@METRICS.register()
@dataclass(frozen=True)
class RelevanceMassAccuracy(_Localisation):
    """RMA = Σ_{p∈GT} R_p / Σ_p R_p on the pooled, non-negative map R (Arras et al. 2022).

    Pinned: channels pooled with ``pooling`` (default ``pos_sum``, Arras' ``sum,pos``: negative
    evidence is not "mass"); a signed pooling is refused since the ratio would leave [0, 1].
    NaN for an empty mask or an all-zero map. Chance level (a constant map) is |GT| / N.
    """

    name = "relevance_mass_accuracy"

    pooling: Pooling = "pos_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        mask = self.mask(ctx)
        relevance = _non_negative(pool_channels(ctx.a, self.pooling), self.pooling).flatten(1)
        total = relevance.sum(1)
        inside = (relevance * mask).sum(1)
        score = inside / total
        return score.masked_fill((total <= 0) | (mask.sum(1) == 0), float("nan"))


@METRICS.register()
@dataclass(frozen=True)
class RelevanceRankAccuracy(_Localisation):
    """RRA = |top-K pixels ∩ GT| / K with K = |GT|, on the pooled map (Arras et al. 2022).

    Pinned: ties at the K-th value are broken at random *in expectation* (each tied pixel counts
    with probability of being chosen), so a constant map scores exactly the chance level |GT|/N
    instead of depending on pixel order. NaN for an empty mask.
    """

    name = "relevance_rank_accuracy"

    pooling: Pooling = "pos_sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        relevance, ordered, mask = self.ranked(ctx, self.pooling)
        k = mask.sum(1)
        score = (expected_top_k_hits(relevance, ordered, mask, k) / k.double()).to(ctx.a.dtype)
        return score.masked_fill(k == 0, float("nan"))


@METRICS.register()
@dataclass(frozen=True)
class PointingGame(_Localisation):
    """Hit (1) if the most relevant pixel lies in the mask, else 0 (Zhang et al. 2018, IJCV).

    Pinned: pooled with ``pooling`` (default ``sum``: the strongest positive evidence); several
    maximal pixels count as a random pick among them in expectation, i.e. the score is the share
    of maximal pixels inside the mask (a constant map scores |GT|/N; Quantus counts any tied
    maximum inside as a hit). NaN for an empty mask (Quantus 0.6.0 returns ``True``, metrics.md
    §2.4 #1). No tolerance margin around the mask.
    """

    name = "pointing_game"

    pooling: Pooling = "sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        relevance, ordered, mask = self.ranked(ctx, self.pooling)
        one = torch.ones(len(mask), dtype=torch.long, device=mask.device)
        hit = expected_top_k_hits(relevance, ordered, mask, one).to(ctx.a.dtype)
        return hit.masked_fill(mask.sum(1) == 0, float("nan"))


@METRICS.register()
@dataclass(frozen=True)
class AttributionLocalisation(_Localisation):
    """Share of positive relevance inside the mask (Kohlbrenner et al. 2020, IJCNN).

    mu = Σ_{p∈GT} R⁺_p / Σ_p R⁺_p with R⁺ the pooled map's positive part (``pooling="pos_sum"``).
    ``weighted=True`` divides mu by the chance level |GT|/N, so 1 means "no better than a constant
    map" (Quantus multiplies by a mis-computed size ratio, metrics.md §2.4 #3). Samples whose mask
    covers more than ``max_size`` of the image are NaN (Kohlbrenner's large-object filter;
    Quantus only warns), as are empty masks and maps without positive relevance.
    """

    name = "attribution_localisation"

    pooling: Pooling = "pos_sum"
    weighted: bool = False
    max_size: Fraction = 1.0

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        mask = self.mask(ctx)
        relevance = _non_negative(pooled(ctx, self.pooling), self.pooling)
        size = mask.double().mean(1)
        total = relevance.sum(1)
        share = (relevance * mask).sum(1) / total
        if self.weighted:
            share = share / size
        undefined = (total <= 0) | (size == 0) | (size > self.max_size)
        return share.masked_fill(undefined, float("nan")).to(ctx.a.dtype)


@METRICS.register()
@dataclass(frozen=True)
class TopKIntersection(_Localisation):
    """Share of the k most relevant pixels that lie in the mask (Theiner et al. 2021).

    Pinned: ``k < 1`` is a fraction of the pixels (rounded, at least 1), ``k >= 1`` a pixel count
    (Quantus: ``k=1000`` features of the map as given); ties at the k-th value in expectation.
    ``concept_influence=True`` divides by |GT|/N (as Quantus' option). NaN for an empty mask.
    """

    name = "top_k_intersection"

    k: Positive = 0.1  # a fraction of the pixels (< 1) or a count (>= 1)
    pooling: Pooling = "sum"
    concept_influence: bool = False

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        relevance, ordered, mask = self.ranked(ctx, self.pooling)
        n = relevance.shape[1]
        k = max(1, round(self.k * n)) if self.k < 1 else int(self.k)
        if self.k <= 0 or not 1 <= k <= n:
            raise ValueError(f"top_k_intersection: k={self.k} selects {k} of {n} pixels; use 0 < k < 1 or 1..{n}")
        count = torch.full((len(mask),), k, dtype=torch.long, device=mask.device)
        score = expected_top_k_hits(relevance, ordered, mask, count) / k
        if self.concept_influence:
            score = score / mask.double().mean(1)
        return score.to(ctx.a.dtype).masked_fill(mask.sum(1) == 0, float("nan"))


@METRICS.register()
@dataclass(frozen=True)
class AreaUnderCurve(_Localisation):
    """ROC-AUC of the pooled map as a score separating mask from background pixels (Fawcett 2006).

    Computed as the Mann–Whitney statistic (Σ ranks of mask pixels − P(P+1)/2) / (P·Q) with
    average ranks for ties, which equals scikit-learn's ``roc_auc_score`` (ties count 1/2)
    without a per-sample loop. 0.5 is chance. NaN for an empty or a full mask (one class only).
    """

    name = "auc"

    pooling: Pooling = "sum"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        mask = self.mask(ctx)
        ranks = average_ranks(pooled(ctx, self.pooling))
        positives = mask.sum(1).double()
        negatives = mask.shape[1] - positives
        auc = ((ranks * mask).sum(1) - positives * (positives + 1) / 2) / (positives * negatives)
        return auc.masked_fill((positives == 0) | (negatives == 0), float("nan")).to(ctx.a.dtype)


def _non_negative(relevance: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "sum":
        raise ValueError("relevance mass needs a non-negative pooling (pos_sum, sum_abs, abs_sum, ...), not 'sum'")
    return relevance
