"""Faithfulness: does removing what the explanation calls relevant change the prediction?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.perturbation import (
    DEFAULT_MEMORY_BUDGET,
    Order,
    baseline_image,
    perturbation_curve,
    step_of_pixel,
    target_scores,
)
from xaisearch.metrics.pooling import Pooling, pool_channels


@dataclass(frozen=True)
class PixelFlipping(Metric):
    """Area over the perturbation curve (AOPC) of pixel flipping (Bach et al. 2015; Samek et al. 2017).

    Pixels (all channels together) are ranked by the channel-summed, signed attribution and
    replaced by ``baseline`` in ``steps`` equal steps, most relevant first (``morf``) or least
    (``lerf``). With y_0 the clean score and y_k the score after step k,
    ``AOPC = (1/(steps+1)) · Σ_{k=0..steps} (y_0 − y_k)`` — the k=0 term counts in the mean as in
    the code of Pahde et al. Scores are softmax probabilities of the explained class
    (``softmax=True``) or its logit. Higher is better for MoRF; for LeRF lower is better, so
    choose the direction in the study file when using ``order: lerf``.
    """

    name = "pixel_flipping"
    category = "faithfulness"
    direction = "higher"
    needs_model = True

    steps: int = 16
    order: Order = "morf"
    baseline: Literal["mean", "zero"] | float | tuple[float, ...] = "mean"
    softmax: bool = True
    pooling: Pooling = "sum"
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    @property
    def forwards_per_sample(self) -> int:  # type: ignore[override]
        return self.steps

    def curve(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = pool_channels(ctx.a, self.pooling).flatten(1)
        removal = step_of_pixel(relevance, self.steps, self.order)
        key = ("target_scores", self.softmax)
        if key not in ctx.cache:
            with torch.no_grad():
                ctx.cache[key] = target_scores(ctx.model, ctx.x, ctx.y, self.softmax)
        return perturbation_curve(
            ctx.model,
            ctx.x,
            ctx.y,
            removal,
            self.steps,
            baseline_image(ctx.x, self.baseline),
            softmax=self.softmax,
            clean=ctx.cache[key],
            memory_budget=self.memory_budget,
        )

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        curve = self.curve(ctx)
        return (curve[:, :1] - curve).mean(1)
