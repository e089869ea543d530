"""Rank helpers shared by the rank-based metrics: batched, on device, ties handled exactly.

``sorted_relevance`` keeps one descending sort per (map, pooling) in ``ctx.scratch`` so that
every rank-based metric of a suite reuses it within a scoring call.
"""

from __future__ import annotations

import torch

from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.pooling import Pooling, pool_channels


def pooled(ctx: MetricContext, pooling: Pooling) -> torch.Tensor:
    """The B×N pooled map of ``ctx.a`` (float64), computed once per scoring call."""
    key = ("pooled", pooling, id(ctx.a))
    if key not in ctx.scratch:
        ctx.scratch[key] = pool_channels(ctx.a, pooling).flatten(1).double()
    return ctx.scratch[key]


def sorted_relevance(ctx: MetricContext, pooling: Pooling) -> torch.Tensor:
    """The pooled map sorted descending per sample (B×N), one sort per scoring call."""
    key = ("sorted", pooling, id(ctx.a))
    if key not in ctx.scratch:
        ctx.scratch[key] = pooled(ctx, pooling).sort(dim=1, descending=True).values
    return ctx.scratch[key]


def expected_top_k_hits(
    relevance: torch.Tensor, ordered: torch.Tensor, mask: torch.Tensor, k: torch.Tensor
) -> torch.Tensor:
    """Expected number of mask pixels among the top ``k`` (per sample), ties broken at random.

    Pixels above the k-th value count fully; the pixels tied with it fill the remaining places,
    each with equal probability, so the count is the same for every order of tied pixels.
    ``ordered`` is ``relevance`` sorted descending; ``k`` ≥ 1 is a B-vector.
    """
    kth = ordered.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
    above = relevance > kth
    tied = relevance == kth
    places = (k - above.sum(1)).double()
    inside_tied = (tied & mask).sum(1).double()
    return (above & mask).sum(1).double() + places * inside_tied / tied.sum(1).clamp(min=1).double()


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N along dim 1, tied values sharing the mean of their ranks (as SciPy's rankdata)."""
    b, n = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    new_group = torch.ones_like(ordered, dtype=torch.bool)
    new_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = new_group.long().cumsum(1) - 1 + torch.arange(b, device=values.device).view(-1, 1) * n
    position = torch.arange(1, n + 1, device=values.device, dtype=torch.float64).expand(b, n).reshape(-1)
    first = torch.full((b * n,), float(n + 1), dtype=torch.float64, device=values.device)
    last = torch.zeros(b * n, dtype=torch.float64, device=values.device)
    first.scatter_reduce_(0, group.reshape(-1), position, "amin")
    last.scatter_reduce_(0, group.reshape(-1), position, "amax")
    mean_rank = ((first + last) / 2)[group.reshape(-1)].view(b, n)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation per row of two B×N tensors; NaN for a constant row."""
    return pearson(average_ranks(a), average_ranks(b))


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per row of two B×N tensors, in float64; NaN where either row is constant.

    The one definition (``spearman`` here, ``faithfulness_correlation``): centred rows, no
    epsilon; the denominator is the product of the rows' norms, exactly 0 only for a constant row.
    """
    a, b = a.double(), b.double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    return ((a * b).sum(1) / norm).masked_fill(norm == 0, float("nan"))
