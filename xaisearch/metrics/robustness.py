"""Robustness: how much an explanation changes under small input perturbations.

Noise is drawn once per batch from a CPU generator seeded by ``seed`` and cached in
``ctx.cache`` (it does not depend on the explanation: every trial sees the same noisy inputs,
common random numbers). All ``samples`` noisy copies of a batch are explained together, in
chunks sized by the memory budget (``execution.explain_in_chunks``).
Avg- and MaxSensitivity with equal parameters share one set of noisy explanations through
``ctx.scratch``: a suite holding both pays ``samples`` explanations per image, not twice that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from xaisearch.metrics.base import Metric, MetricContext, generator
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.execution import explain_in_chunks
from xaisearch.metrics.parameters import Count, Positive, Seed
from xaisearch.metrics.pooling import Normalisation, Pooling, normalise_per_sample, pool_channels


def noisy_inputs(ctx: MetricContext, kind: str, samples: int, scale: float, seed: int) -> torch.Tensor:
    """``samples`` noisy copies of ``ctx.x`` (S·B×C×H×W, copy-major), cached per batch.

    ``uniform``: x + U(−scale, scale) per value; ``gaussian``: x + N(0, scale²) per value.
    """
    key = ("noisy_inputs", kind, samples, scale, seed)
    if key not in ctx.cache:
        shape = (samples, *ctx.x.shape)
        rng = generator(seed)
        if kind == "uniform":
            noise = (torch.rand(shape, generator=rng, dtype=ctx.x.dtype) * 2 - 1) * scale
        else:
            noise = torch.randn(shape, generator=rng, dtype=ctx.x.dtype) * scale
        ctx.cache[key] = (ctx.x.unsqueeze(0) + noise.to(ctx.x.device)).flatten(0, 1)
    return ctx.cache[key]


def noisy_explanations(ctx: MetricContext, kind: str, samples: int, scale: float, seed: int) -> torch.Tensor:
    """Explanations of the noisy copies (S×B×…), shared within a scoring call."""
    key = ("noisy_explanations", kind, samples, scale, seed, id(ctx.a))
    if key not in ctx.scratch:
        x = noisy_inputs(ctx, kind, samples, scale, seed)
        a = explain_in_chunks(ctx.required_explainer, ctx.model, x, ctx.y.repeat(samples))
        ctx.scratch[key] = a.view(samples, len(ctx.x), *a.shape[1:])
    return ctx.scratch[key]


def explanation_changes(
    a: torch.Tensor, noisy: torch.Tensor, pooling: Pooling, normalise: Normalisation
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean map B×N, change S×B): ‖â − â′_j‖₂ over pixels between the clean map and each noisy one.

    Maps are pooled with ``pooling`` and normalised per sample with ``normalise``, in float64;
    ``noisy`` is S×B×… (``noisy_explanations``).
    """
    clean = normalise_per_sample(pool_channels(a, pooling).flatten(1).double(), normalise)
    perturbed = pool_channels(noisy.flatten(0, 1), pooling).flatten(1).double()
    perturbed = normalise_per_sample(perturbed, normalise).view(len(noisy), *clean.shape)
    return clean, (perturbed - clean.unsqueeze(0)).norm(dim=2)


@dataclass(frozen=True)
class _Sensitivity(Metric):
    category = "robustness"
    direction = "lower"
    needs_explainer = True

    samples: Count = 10
    radius: Positive = 0.2
    denominator: Literal["input", "explanation"] = "input"
    normalise: Normalisation = "second_moment"
    pooling: Pooling = "sum"
    seed: Seed = 0

    @property
    def explanations_per_sample(self) -> int:  # type: ignore[override]
        return self.samples

    def sensitivities(self, ctx: MetricContext) -> torch.Tensor:
        """B×S: ‖a − a′_j‖_F / ‖x‖_F (or / ‖a‖_F) for each noisy copy j."""
        self.check(ctx)
        if self.samples < 1 or self.radius <= 0:
            raise ValueError(f"{self.name}: samples must be >= 1 and radius > 0, got {self.samples}, {self.radius}")
        noisy = noisy_explanations(ctx, "uniform", self.samples, self.radius, self.seed)
        clean, change = explanation_changes(ctx.a, noisy, self.pooling, self.normalise)
        change = change.T
        if self.denominator == "input":
            scale = ctx.x.flatten(1).double().norm(dim=1)
        elif self.denominator == "explanation":
            scale = clean.norm(dim=1)
        else:
            raise ValueError(f"{self.name}: denominator must be 'input' or 'explanation', not {self.denominator!r}")
        return (change / scale.unsqueeze(1)).masked_fill(scale.unsqueeze(1) == 0, float("nan"))


@METRICS.register()
@dataclass(frozen=True)
class AvgSensitivity(_Sensitivity):
    """Mean over noisy copies x′ = x + U(−r, r) of ‖a(x) − a(x′)‖_F / ‖x‖_F (Yeh et al. 2019).

    Pinned as Pahde et al.'s run: ``samples=10``, ``radius=0.2`` on the (normalised) input, maps
    pooled by channel ``sum`` and each divided by its own second moment, no abs, denominator
    ‖x‖_F. ``denominator="explanation"`` with ``normalise="none"`` is Quantus 0.6.0's ‖a(x)‖_F
    form. Per sample (the paper normalises the perturbed maps over the whole batch, a quirk).
    """

    name = "avg_sensitivity"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return self.sensitivities(ctx).mean(1).to(ctx.x.dtype)


@METRICS.register()
@dataclass(frozen=True)
class MaxSensitivity(_Sensitivity):
    """Maximum over noisy copies of ‖a(x) − a(x′)‖_F / ‖x‖_F (Yeh et al. 2019).

    Same semantics and defaults as ``avg_sensitivity``; with equal parameters both are computed
    from the same noisy explanations.
    """

    name = "max_sensitivity"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return self.sensitivities(ctx).amax(1).to(ctx.x.dtype)


@METRICS.register()
@dataclass(frozen=True)
class LocalLipschitz(Metric):
    """max_j ‖a(x) − a(x′_j)‖₂ / ‖x − x′_j‖₂ over x′_j = x + N(0, σ²) (Alvarez-Melis & Jaakkola 2018).

    Pinned: ``samples=10`` (Quantus: 200), ``std=0.1`` (Quantus' default), maps pooled by
    channel ``sum`` and divided by their own max |a| (Quantus ``normalise_by_max``, but per
    sample, not batch-wide), Euclidean norms over all pixels / input values.
    """

    name = "local_lipschitz"
    category = "robustness"
    direction = "lower"
    needs_explainer = True

    samples: Count = 10
    std: Positive = 0.1
    normalise: Normalisation = "max_abs"
    pooling: Pooling = "sum"
    seed: Seed = 0

    @property
    def explanations_per_sample(self) -> int:  # type: ignore[override]
        return self.samples

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        if self.samples < 1 or self.std <= 0:
            raise ValueError(f"local_lipschitz: samples must be >= 1 and std > 0, got {self.samples}, {self.std}")
        noisy_x = noisy_inputs(ctx, "gaussian", self.samples, self.std, self.seed).view(self.samples, *ctx.x.shape)
        noisy = noisy_explanations(ctx, "gaussian", self.samples, self.std, self.seed)
        _, change = explanation_changes(ctx.a, noisy, self.pooling, self.normalise)
        distance = (noisy_x - ctx.x.unsqueeze(0)).flatten(2).double().norm(dim=2)
        return (change / distance).amax(0).to(ctx.x.dtype)
