"""Shared machinery of perturbation metrics: baselines, pixel orderings, batched curves.

Every curve point is one forward of a perturbed copy of the batch; copies are built lazily per
chunk of curve points and run as one forward, chunks sized by a memory budget, so a curve of
S points costs S forwards per sample and no Python loop over samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Baseline = Literal["mean", "zero"] | float | Sequence[float]
Order = Literal["morf", "lerf"]
DEFAULT_MEMORY_BUDGET = 256 * 2**20


def baseline_image(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """What a removed pixel is replaced by, broadcastable to ``x`` (B×C×H×W).

    ``mean``: the sample's own per-channel mean; ``zero``: 0 (the dataset mean in normalised
    space); a number: that value in every channel; a list: one value per channel.
    """
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True)
    if baseline == "zero":
        return torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
    if isinstance(baseline, (int, float)):
        return torch.full((1, x.shape[1], 1, 1), float(baseline), dtype=x.dtype, device=x.device)
    values = torch.as_tensor(list(baseline), dtype=x.dtype, device=x.device)
    if values.numel() != x.shape[1]:
        raise ValueError(f"baseline has {values.numel()} values for {x.shape[1]} channels")
    return values.view(1, -1, 1, 1)


def step_of_pixel(relevance: torch.Tensor, steps: int, order: Order = "morf") -> torch.Tensor:
    """For B×N pooled relevance: the curve step (1..steps) at which each pixel is removed.

    Pixels are ranked by relevance (descending for MoRF, ascending for LeRF; a stable sort, so
    ties keep pixel order) and removed ``ceil(N / steps)`` per step.
    """
    n = relevance.shape[1]
    if not 1 <= steps <= n:
        raise ValueError(f"steps must be in 1..{n} (pixels), got {steps}")
    per_step = -(-n // steps)
    ranking = torch.argsort(relevance, dim=1, descending=order == "morf", stable=True)
    position = torch.empty_like(ranking)
    position.scatter_(1, ranking, torch.arange(n, device=relevance.device).expand_as(ranking))
    return position // per_step + 1


def target_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, softmax: bool) -> torch.Tensor:
    """The model's output at the target class: probability if ``softmax`` else logit."""
    logits = model(x)
    scores = logits.softmax(-1) if softmax else logits
    return scores.gather(1, y.view(-1, 1)).squeeze(1)


def chunk_size(x: torch.Tensor, memory_budget: int) -> int:
    """How many copies of the batch fit in ``memory_budget`` bytes."""
    return max(1, memory_budget // max(1, x.numel() * x.element_size()))


def perturbation_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    removal_step: torch.Tensor,
    steps: int,
    baseline: torch.Tensor,
    softmax: bool = True,
    clean: torch.Tensor | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """B×(steps+1) curve: the clean score, then the score after each removal step.

    ``removal_step`` is B×H×W (from ``step_of_pixel``); a pixel is replaced by ``baseline`` in
    every channel from its step on.
    """
    batch = x.shape[0]
    removal_step = removal_step.view(batch, 1, *x.shape[-2:])
    points = [clean if clean is not None else None]
    per_chunk = chunk_size(x, memory_budget)
    with torch.no_grad():
        if clean is None:
            points[0] = target_scores(model, x, y, softmax)
        for first in range(1, steps + 1, per_chunk):
            chunk_steps = torch.arange(first, min(steps, first + per_chunk - 1) + 1, device=x.device)
            removed = removal_step.unsqueeze(0) <= chunk_steps.view(-1, 1, 1, 1, 1)  # S×B×1×H×W
            perturbed = torch.where(removed, baseline.unsqueeze(0), x.unsqueeze(0))
            flat = perturbed.reshape(-1, *x.shape[1:])
            scores = target_scores(model, flat, y.repeat(len(chunk_steps)), softmax)
            points.extend(scores.view(len(chunk_steps), batch).unbind(0))
    return torch.stack(points, dim=1)
