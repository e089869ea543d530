"""Similarity of two maps: SSIM in torch (batched, on device), as scikit-image computes it."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

SSIMForm = Literal["2d", "flat1d"]


def ssim(a: torch.Tensor, b: torch.Tensor, form: SSIMForm = "2d", window: int = 7) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) of each pair of B×H×W maps (float64).

    As ``skimage.metrics.structural_similarity`` with its defaults: a uniform ``window``-sized
    window, K1 = 0.01, K2 = 0.03, sample covariances, the mean over windows fully inside the map,
    and ``data_range`` = max − min over both maps of the pair (as Quantus passes it).
    ``form="2d"``: 2-D windows on the map; ``"flat1d"``: the maps flattened row-major into 1-D
    signals (what Quantus' RandomLogit and Pahde et al.'s code compute, metrics.md §2.4 #11).
    NaN where both maps are constant and equal (no range).
    """
    a, b = a.double(), b.double()
    both = torch.cat([a.flatten(1), b.flatten(1)], 1)
    data_range = both.amax(1) - both.amin(1)
    if form == "flat1d":
        a, b = a.flatten(1).unsqueeze(1), b.flatten(1).unsqueeze(1)
        pool, points = (lambda t: F.avg_pool1d(t, window, stride=1)), window
    elif form == "2d":
        a, b = a.unsqueeze(1), b.unsqueeze(1)
        pool, points = (lambda t: F.avg_pool2d(t, window, stride=1)), window * window
    else:
        raise ValueError(f"unknown SSIM form {form!r}; choose '2d' or 'flat1d'")
    if min(a.shape[2:]) < window:
        raise ValueError(f"SSIM window {window} is larger than the map {tuple(a.shape[2:])}")
    mean_a, mean_b = pool(a), pool(b)
    cov_norm = points / (points - 1)
    var_a = cov_norm * (pool(a * a) - mean_a * mean_a)
    var_b = cov_norm * (pool(b * b) - mean_b * mean_b)
    cov = cov_norm * (pool(a * b) - mean_a * mean_b)
    c1 = (0.01 * data_range).pow(2).view(-1, *[1] * (a.dim() - 1))
    c2 = (0.03 * data_range).pow(2).view(-1, *[1] * (a.dim() - 1))
    index = (2 * mean_a * mean_b + c1) * (2 * cov + c2) / ((mean_a.pow(2) + mean_b.pow(2) + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(1)
