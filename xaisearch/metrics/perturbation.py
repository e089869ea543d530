"""Shared machinery of perturbation metrics: baselines, feature orderings, batched curves, summaries.

Every curve point (or random subset) is one forward of a perturbed copy of the batch; copies
are built lazily per chunk and run as one forward, chunks sized by a memory budget, so S
perturbations cost S forwards per sample and no Python loop over samples.

A *feature* is a pixel with all its channels (``features="pixel"``, as Pahde et al.) or one
channel value (``features="channel"``, Quantus 0.6.0). Removal masks are B×1×H×W for pixels and
B×C×H×W for channel values; either broadcasts against the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xaisearch.metrics.execution import DEFAULT_MEMORY_BUDGET, chunk_size, forward
from xaisearch.metrics.pooling import Pooling, pool_channels

Baseline = Literal["mean", "zero", "black", "blur", "uniform"] | float | Sequence[float]
Order = Literal["morf", "lerf"]
Features = Literal["pixel", "channel"]
BLUR_KERNEL = 15
BASELINES = ("mean", "zero", "black", "blur", "uniform")


def baseline_image(
    x: torch.Tensor, baseline: Baseline, generator: torch.Generator | None = None, blur_kernel: int = BLUR_KERNEL
) -> torch.Tensor:
    """What a removed feature is replaced by, broadcastable to ``x`` (B×C×H×W).

    ``mean``: the sample's own per-channel mean; ``zero``: 0 (the dataset mean in normalised
    space); ``black``: the sample's minimum over all values (Quantus' "black"); ``blur``: the
    image blurred with a ``blur_kernel``² box filter, zero-padded and divided by the full kernel
    size (Quantus' ``baseline_replacement_by_blur``); ``uniform``: one independent draw per value
    from U(min, max) of the sample, from the CPU ``generator`` (Quantus draws one value per sample); a
    number: that value in every channel; a list: one value per channel.
    """
    if isinstance(baseline, str):
        if baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True)
        if baseline == "zero":
            return torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
        if baseline == "black":
            return x.amin(dim=(1, 2, 3), keepdim=True)
        if baseline == "blur":
            return F.avg_pool2d(x, blur_kernel, stride=1, padding=blur_kernel // 2, count_include_pad=True)[
                ..., : x.shape[-2], : x.shape[-1]
            ]
        if baseline == "uniform":
            low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            return low + (high - low) * noise
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {BASELINES}, a number or one value per channel")
    if isinstance(baseline, (int, float)):
        return torch.full((1, x.shape[1], 1, 1), float(baseline), dtype=x.dtype, device=x.device)
    values = torch.as_tensor(list(baseline), dtype=x.dtype, device=x.device)
    if values.numel() != x.shape[1]:
        raise ValueError(f"baseline has {values.numel()} values for {x.shape[1]} channels")
    return values.view(1, -1, 1, 1)


def feature_relevance(a: torch.Tensor, x: torch.Tensor, features: Features, pooling: Pooling) -> torch.Tensor:
    """B×N relevance per feature: channel-pooled per pixel, or per channel value (``a`` broadcast to ``x``)."""
    if features == "pixel":
        return pool_channels(a, pooling).flatten(1)
    if features == "channel":
        return a.expand_as(x).flatten(1)
    raise ValueError(f"features must be 'pixel' or 'channel', got {features!r}")


def feature_shape(x: torch.Tensor, features: Features) -> torch.Size:
    """Shape of a per-feature map that broadcasts against ``x``: B×1×H×W or B×C×H×W."""
    return torch.Size((x.shape[0], 1, *x.shape[-2:])) if features == "pixel" else x.shape


def step_of_pixel(relevance: torch.Tensor, steps: int, order: Order = "morf") -> torch.Tensor:
    """For B×N relevance: the curve step (1..steps) at which each feature is removed.

    Features are ranked by relevance (descending for MoRF, ascending for LeRF; a stable sort, so
    ties keep feature order) and removed ``ceil(N / steps)`` per step.
    """
    n = relevance.shape[1]
    if not 1 <= steps <= n:
        raise ValueError(f"steps must be in 1..{n} (features), got {steps}")
    per_step = -(-n // steps)
    ranking = torch.argsort(relevance, dim=1, descending=order == "morf", stable=True)
    position = torch.empty_like(ranking)
    position.scatter_(1, ranking, torch.arange(n, device=relevance.device).expand_as(ranking))
    return position // per_step + 1


def target_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, softmax: bool) -> torch.Tensor:
    """The model's output at the target class: probability if ``softmax`` else logit."""
    logits = forward(model, x)
    scores = logits.softmax(-1) if softmax else logits
    return scores.gather(1, y.view(-1, 1)).squeeze(1)


def masked_scores(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    baseline: torch.Tensor,
    count: int,
    mask_of: Callable[[int, int], torch.Tensor],
    softmax: bool = True,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """B×count target scores of ``count`` perturbed copies of the batch.

    ``mask_of(first, stop)`` returns the (stop−first)×B×c×H×W boolean masks of copies
    ``first..stop−1`` (True: take ``baseline``); they are built per chunk, never all at once.
    """
    batch = x.shape[0]
    per_chunk = chunk_size(x, memory_budget)
    points = []
    with torch.no_grad():
        for first in range(0, count, per_chunk):
            stop = min(count, first + per_chunk)
            perturbed = torch.where(mask_of(first, stop), baseline.unsqueeze(0), x.unsqueeze(0))
            scores = target_scores(model, perturbed.reshape(-1, *x.shape[1:]), y.repeat(stop - first), softmax)
            points.append(scores.view(stop - first, batch))
    return torch.cat(points, dim=0).T


def perturbation_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    removal_step: torch.Tensor,
    steps: int,
    baseline: torch.Tensor,
    softmax: bool = True,
    clean: torch.Tensor | None = None,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    insertion: bool = False,
) -> torch.Tensor:
    """B×(steps+1) curve of target scores, point k after k removal (or insertion) steps.

    ``removal_step`` (B×N, from ``step_of_pixel``, N = H·W or C·H·W) gives each feature's step;
    a feature is replaced by ``baseline`` from its step on. Deletion: point 0 is the clean score
    (``clean`` when given). Insertion: the copy at point k shows the features of steps ≤ k on
    the baseline, so point 0 is the baseline image and point ``steps`` the clean input.
    """
    step = removal_step.view(x.shape[0], -1, *x.shape[-2:])
    if clean is None:
        with torch.no_grad():
            clean = target_scores(model, x, y, softmax)
    ks = torch.arange(steps + 1, device=x.device).view(-1, 1, 1, 1, 1)
    if insertion:
        rest = masked_scores(model, x, y, baseline, steps, lambda i, j: step > ks[i:j], softmax, memory_budget)
        return torch.cat([rest, clean.unsqueeze(1)], dim=1)
    rest = masked_scores(model, x, y, baseline, steps, lambda i, j: step <= ks[i + 1 : j + 1], softmax, memory_budget)
    return torch.cat([clean.unsqueeze(1), rest], dim=1)


def aopc(curve: torch.Tensor) -> torch.Tensor:
    """Area over the perturbation curve: mean over all L points of (y_0 − y_k), the k=0 term included.

    As ``compute_aopc`` in the code of Pahde et al. (Samek et al. 2017 divide by L as well).
    """
    return (curve[:, :1] - curve).mean(1)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under the curve by the trapezoid rule on an even grid over [0, 1] (Petsiuk et al. 2018)."""
    steps = curve.shape[1] - 1
    return (curve.sum(1) - (curve[:, 0] + curve[:, -1]) / 2) / steps


def region_steps(
    relevance: torch.Tensor,
    patch_size: int,
    regions: int,
    order: Order = "morf",
    candidates: Literal["all_offsets", "grid"] = "all_offsets",
) -> torch.Tensor:
    """B×H×W step (1..regions) at which each pixel's region is removed; ``regions + 1``: never.

    Candidates are the ``patch_size``² squares inside the image at every pixel offset
    (``all_offsets``, the fork of Quantus used by Pahde et al.) or on the non-overlapping grid
    from the top-left corner (``grid``, Quantus 0.6.0 when ``patch_size`` divides H and W; a
    remainder border is never a candidate). They are ranked by summed relevance (descending for
    MoRF, ascending for LeRF) and taken greedily, skipping any that overlaps one already taken;
    a sample left without a free candidate perturbs nothing more in later steps. The loop runs
    over regions, batched over samples.
    """
    batch, height, width = relevance.shape
    if not 1 <= patch_size <= min(height, width):
        raise ValueError(f"patch_size must be in 1..{min(height, width)} for {height}×{width} inputs, got {patch_size}")
    stride = 1 if candidates == "all_offsets" else patch_size
    sums = F.avg_pool2d(relevance.unsqueeze(1).double(), patch_size, stride=stride)
    rows_k, cols_k = sums.shape[-2:]
    sums = sums.flatten(1) * (1.0 if order == "morf" else -1.0)
    device = relevance.device
    top = (torch.arange(rows_k, device=device) * stride).repeat_interleave(cols_k)
    left = (torch.arange(cols_k, device=device) * stride).repeat(rows_k)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    step = torch.full((batch, height, width), regions + 1, dtype=torch.long, device=device)
    available = torch.ones_like(sums, dtype=torch.bool)
    for k in range(1, regions + 1):
        found = available.any(1)
        best = sums.masked_fill(~available, float("-inf")).argmax(1)
        row, col = top[best].view(-1, 1), left[best].view(-1, 1)
        inside_rows = (rows >= row) & (rows < row + patch_size)
        inside_cols = (cols >= col) & (cols < col + patch_size)
        inside = inside_rows.unsqueeze(2) & inside_cols.unsqueeze(1) & found.view(-1, 1, 1)
        step = step.masked_fill(inside, k)
        available &= ((top - row).abs() >= patch_size) | ((left - col).abs() >= patch_size)
    return step
