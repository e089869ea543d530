"""Complexity: how concentrated an explanation is."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.pooling import Pooling, pool_channels


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
        relevance = pool_channels(ctx.a, self.pooling).flatten(1).double()
        if bool((relevance < 0).any()):
            raise ValueError(f"sparseness needs a non-negative pooling, not {self.pooling!r}")
        n = relevance.shape[1]
        ordered = relevance.sort(dim=1).values
        rank = torch.arange(1, n + 1, device=relevance.device, dtype=relevance.dtype)
        total = ordered.sum(1)
        gini = ((2 * rank - n - 1) * ordered).sum(1) / (n * total)
        return gini.masked_fill(total <= 0, float("nan")).to(ctx.a.dtype)
