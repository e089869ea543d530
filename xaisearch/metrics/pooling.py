"""Channel pooling: one relevance value per pixel from a B×C×H×W attribution.

A "feature" in xaisearch is a pixel with all its channels (as Pahde et al.), so every metric
first pools channels with one of these (names after the CLEVR-XAI evaluation of Arras et al.):

| name | per pixel | sign |
|---|---|---|
| ``sum`` | Σ_c a_c | signed |
| ``pos_sum`` | max(Σ_c a_c, 0) | ≥ 0 |
| ``sum_abs`` | \\|Σ_c a_c\\| | ≥ 0 |
| ``abs_sum`` | Σ_c \\|a_c\\| | ≥ 0 |
| ``pos_sq_sum`` | Σ_c max(a_c, 0)² | ≥ 0 |
| ``max_abs`` | max_c \\|a_c\\| | ≥ 0 |
| ``l2`` | sqrt(Σ_c a_c²) | ≥ 0 |
"""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["sum", "pos_sum", "sum_abs", "abs_sum", "pos_sq_sum", "max_abs", "l2"]
POOLINGS: tuple[str, ...] = ("sum", "pos_sum", "sum_abs", "abs_sum", "pos_sq_sum", "max_abs", "l2")


def pool_channels(a: torch.Tensor, pooling: Pooling = "sum") -> torch.Tensor:
    """B×C×H×W (or B×H×W) → B×H×W."""
    if a.dim() == 3:
        a = a.unsqueeze(1)
    if pooling == "sum":
        return a.sum(1)
    if pooling == "pos_sum":
        return a.sum(1).clamp(min=0)
    if pooling == "sum_abs":
        return a.sum(1).abs()
    if pooling == "abs_sum":
        return a.abs().sum(1)
    if pooling == "pos_sq_sum":
        return a.clamp(min=0).pow(2).sum(1)
    if pooling == "max_abs":
        return a.abs().amax(1)
    if pooling == "l2":
        return a.pow(2).sum(1).sqrt()
    raise ValueError(f"unknown channel pooling {pooling!r}; choose one of {POOLINGS}")


def mask_2d(s: torch.Tensor) -> torch.Tensor:
    """A B×1×H×W or B×H×W mask as a boolean B×H×W tensor."""
    if s.dim() == 4:
        if s.shape[1] != 1:
            raise ValueError(f"mask must have one channel, got shape {tuple(s.shape)}")
        s = s[:, 0]
    return s.bool()


Normalisation = Literal["second_moment", "max_abs", "none"]


def normalise_per_sample(a: torch.Tensor, how: Normalisation = "second_moment") -> torch.Tensor:
    """Each sample's map divided by one positive number of its own (never the batch's).

    ``second_moment``: √(mean a²) (``normalize_by_second_moment`` of Pahde et al.; Binder et al.
    2022); ``max_abs``: max |a| (Quantus ``normalise_by_max``, but per sample: Quantus 0.6.0
    normalises over the whole batch, metrics.md §2.4 #14); ``none``. All-zero maps stay zero.
    """
    if how == "none":
        return a
    flat = a.flatten(1)
    if how == "second_moment":
        scale = flat.pow(2).mean(1).sqrt()
    elif how == "max_abs":
        scale = flat.abs().amax(1)
    else:
        raise ValueError(f"unknown normalisation {how!r}; choose second_moment, max_abs or none")
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return a / scale.view(-1, *([1] * (a.dim() - 1)))
