"""Faithfulness: does removing what the explanation calls relevant change the prediction?

Shared pins (each metric's docstring adds its own): a feature is a pixel with all its channels
(``features="pixel"``, relevance pooled over channels with ``pooling``) unless
``features="channel"`` (one channel value, Quantus 0.6.0); ties in the ranking keep feature
order; ``seed`` drives the ``uniform`` baseline and random subsets through a CPU
``torch.Generator`` (draws moved to the inputs' device, so a seed gives the same draws on every
device); work that does not depend on the explanation (clean scores, random subsets and their
prediction drops) is kept in ``ctx.cache``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from xaisearch.metrics.base import Metric, MetricContext, generator
from xaisearch.metrics.catalog import METRICS, Direction
from xaisearch.metrics.execution import DEFAULT_MEMORY_BUDGET, memory_budget_for
from xaisearch.metrics.parameters import Count, Seed
from xaisearch.metrics.perturbation import (
    Features,
    Order,
    aopc,
    auc,
    baseline_image,
    feature_relevance,
    feature_shape,
    masked_scores,
    perturbation_curve,
    region_steps,
    step_of_pixel,
    target_scores,
)
from xaisearch.metrics.pooling import Pooling, pool_channels
from xaisearch.metrics.ranking import pearson

BaselineField = Literal["mean", "zero", "black", "blur", "uniform"] | float | tuple[float, ...]


def clean_scores(ctx: MetricContext, softmax: bool) -> torch.Tensor:
    """Target scores of the unperturbed batch, computed once per batch and cache."""
    key = ("target_scores", softmax)
    if key not in ctx.cache:
        with torch.no_grad():
            ctx.cache[key] = target_scores(ctx.required_model, ctx.x, ctx.y, softmax)
    return ctx.cache[key]


def by_order(order: Order, morf: Direction = "higher") -> Direction:
    """The direction of a perturbation metric: ``morf`` for MoRF order, the other one for LeRF."""
    if order == "morf":
        return morf
    return "lower" if morf == "higher" else "higher"


def hashable(value: Any) -> Any:
    """A baseline field as a cache-key part (lists and tuples as tuples)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def without_undefined_orders(curve: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """NaN rows where a sample's relevance is not finite: NaN has no order to remove pixels in, and
    a curve from sorting it anyway is a made-up score."""
    undefined = ~torch.isfinite(relevance.flatten(1)).all(dim=1)
    return curve.masked_fill(undefined[:, None], float("nan")) if bool(undefined.any()) else curve


@dataclass(frozen=True)
class _OrderedRemoval(Metric):
    """Features removed (or inserted) cumulatively in relevance order, ``steps`` equal steps."""

    category = "faithfulness"
    needs_model = True

    steps: Count = 16
    order: Order = "morf"
    features: Features = "pixel"
    baseline: BaselineField = "mean"
    softmax: bool = True
    pooling: Pooling = "sum"
    seed: Seed = 0
    memory_budget: Count | None = DEFAULT_MEMORY_BUDGET

    insertion = False
    morf_direction: ClassVar[Direction] = "higher"  # the direction for ``order="morf"``; LeRF's is the other

    @property
    def direction(self) -> Direction:  # type: ignore[override]  # a property of ``order``, not a ClassVar
        return by_order(self.order, self.morf_direction)

    @property
    def forwards_per_sample(self) -> int:  # type: ignore[override]
        return self.steps

    def curve(self, ctx: MetricContext) -> torch.Tensor:
        """B×(steps+1) target scores; point 0 is the clean input (deletion) or the baseline (insertion)."""
        self.check(ctx)
        relevance = feature_relevance(ctx.a, ctx.x, self.features, self.pooling)
        curve = perturbation_curve(
            ctx.required_model,
            ctx.x,
            ctx.y,
            step_of_pixel(relevance, self.steps, self.order),
            self.steps,
            baseline_image(ctx.x, self.baseline, generator(self.seed)),
            softmax=self.softmax,
            clean=clean_scores(ctx, self.softmax),
            memory_budget=self.memory_budget,
            insertion=self.insertion,
        )
        return without_undefined_orders(curve, relevance)


@METRICS.register()
@dataclass(frozen=True)
class PixelFlipping(_OrderedRemoval):
    """Area over the perturbation curve (AOPC) of pixel flipping (Bach et al. 2015; Samek et al. 2017).

    Features are ranked by the signed attribution and replaced by ``baseline`` in ``steps``
    equal steps, most relevant first (``morf``) or least (``lerf``). With y_0 the clean score and
    y_k the score after step k, ``AOPC = (1/(steps+1)) · Σ_{k=0..steps} (y_0 − y_k)`` — the k=0
    term counts in the mean as in the code of Pahde et al. Scores are softmax probabilities of
    the explained class (``softmax=True``) or its logit. Higher is better for MoRF, lower for
    LeRF (``direction`` follows ``order``). Quantus 0.6.0 ``PixelFlipping`` returns the curve
    without y_0 and ranks channel values (``features="channel"``).
    """

    name = "pixel_flipping"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return aopc(self.curve(ctx))


@METRICS.register()
@dataclass(frozen=True)
class Deletion(_OrderedRemoval):
    """Deletion AUC (Petsiuk et al. 2018, RISE): area under the MoRF removal curve.

    The curve is pixel flipping's (clean score first, then after each of ``steps`` steps),
    summarised by the trapezoid rule on an even grid over [0, 1] of the removed fraction.
    Pinned: softmax probabilities, baseline ``zero`` (a black image in the paper; the dataset
    mean after normalisation). Lower is better for MoRF, higher for LeRF.
    """

    name = "deletion"
    morf_direction = "lower"

    baseline: BaselineField = "zero"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return auc(self.curve(ctx))


@METRICS.register()
@dataclass(frozen=True)
class Insertion(_OrderedRemoval):
    """Insertion AUC (Petsiuk et al. 2018, RISE): features inserted most relevant first into the baseline.

    Point 0 is the baseline image, point k shows the features of the first k steps on it, point
    ``steps`` is the clean input; trapezoid AUC over [0, 1]. Pinned: softmax probabilities,
    baseline ``blur`` (15×15 box blur of the input, as the paper's blurred canvas). Higher is
    better for MoRF, lower for LeRF.
    """

    name = "insertion"

    baseline: BaselineField = "blur"
    insertion = True

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return auc(self.curve(ctx))


@METRICS.register()
@dataclass(frozen=True)
class RegionPerturbation(Metric):
    """AOPC of region perturbation (Samek et al. 2017): ``regions`` patches removed cumulatively.

    Candidate squares of ``patch_size``² pixels lie at every pixel offset inside the image
    (``candidates="all_offsets"``, the fork of Quantus that Pahde et al. ran) or on the grid
    (``"grid"``, Quantus 0.6.0 for sizes that ``patch_size`` divides); they are ranked by summed
    (channel-pooled) attribution and non-overlapping ones are taken greedily (``region_steps``).
    Each step replaces one more region by ``baseline`` (default ``blur``: 15×15 box blur,
    zero-padded, of the clean input). Score: AOPC over [y_0, …, y_regions] as ``pixel_flipping``.
    Quantus declares the metric lower-is-better although it records the drop; higher is better
    for MoRF, lower for LeRF.
    """

    name = "region_perturbation"
    category = "faithfulness"
    needs_model = True

    patch_size: Count = 8
    regions: Count = 100
    order: Order = "morf"
    candidates: Literal["all_offsets", "grid"] = "all_offsets"
    baseline: BaselineField = "blur"
    softmax: bool = True
    pooling: Pooling = "sum"
    seed: Seed = 0
    memory_budget: Count | None = DEFAULT_MEMORY_BUDGET

    @property
    def direction(self) -> Direction:  # type: ignore[override]  # a property of ``order``, not a ClassVar
        return by_order(self.order)

    @property
    def forwards_per_sample(self) -> int:  # type: ignore[override]
        return self.regions

    def curve(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = pool_channels(ctx.a, self.pooling)
        steps = region_steps(relevance, self.patch_size, self.regions, self.order, self.candidates)
        curve = perturbation_curve(
            ctx.required_model,
            ctx.x,
            ctx.y,
            steps,
            self.regions,
            baseline_image(ctx.x, self.baseline, generator(self.seed)),
            softmax=self.softmax,
            clean=clean_scores(ctx, self.softmax),
            memory_budget=self.memory_budget,
        )
        return without_undefined_orders(curve, relevance)

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return aopc(self.curve(ctx))


@METRICS.register()
@dataclass(frozen=True)
class FaithfulnessCorrelation(Metric):
    """Faithfulness correlation (Bhatt et al. 2020): do random subsets' attributions predict their removal's effect?

    For each of ``runs`` random subsets S of ``subset_size`` features (drawn without replacement,
    independently per sample, from ``seed``), the Pearson correlation over runs between Σ_S a
    and f(x) − f(x with S replaced by ``baseline``). Pinned: logits (``softmax=False``), as
    the paper and Quantus; signed attributions. Subsets and drops do not depend on the
    explanation: they are drawn once per (seed, shape) and cached in ``ctx.cache`` (key:
    ``subset_key``), so later calls cost no forward. NaN where either series is constant.
    Higher is better.
    """

    name = "faithfulness_correlation"
    category = "faithfulness"
    direction = "higher"
    needs_model = True

    subset_size: Count = 224
    runs: Count = 100
    features: Features = "pixel"
    baseline: BaselineField = "mean"
    softmax: bool = False
    pooling: Pooling = "sum"
    seed: Seed = 0
    memory_budget: Count | None = DEFAULT_MEMORY_BUDGET

    @property
    def forwards_per_sample(self) -> int:  # type: ignore[override]
        return self.runs

    def subset_key(self, x: torch.Tensor) -> tuple[Any, ...]:
        return ("faithfulness_correlation.subsets", self.seed, self.runs, self.subset_size, self.features, x.shape)

    def subsets(self, ctx: MetricContext) -> torch.Tensor:
        """B×runs×subset_size feature indices, drawn once per key."""
        key = self.subset_key(ctx.x)
        if key not in ctx.cache:
            n = feature_shape(ctx.x, self.features)[1:].numel()
            if not 1 <= self.subset_size <= n:
                raise ValueError(f"subset_size must be in 1..{n} (features), got {self.subset_size}")
            draw, batch = generator(self.seed), ctx.x.shape[0]
            per_chunk = max(1, memory_budget_for(ctx.x.device, self.memory_budget) // (4 * batch * n))
            draws = [  # run-major, so chunking by memory does not change the draws
                torch.rand(min(per_chunk, self.runs - r), batch, n, generator=draw).topk(self.subset_size, dim=-1)
                for r in range(0, self.runs, per_chunk)
            ]
            ctx.cache[key] = torch.cat([d.indices for d in draws]).transpose(0, 1).to(ctx.x.device)
        return ctx.cache[key]

    def drops(self, ctx: MetricContext) -> torch.Tensor:
        """B×runs prediction drops f(x) − f(x_S), cached with the subsets."""
        key = (*self.subset_key(ctx.x), hashable(self.baseline), self.softmax)
        if key not in ctx.cache:
            subsets, shape = self.subsets(ctx), feature_shape(ctx.x, self.features)

            def mask_of(first: int, stop: int) -> torch.Tensor:
                chosen = subsets[:, first:stop].transpose(0, 1)  # S×B×k
                mask = torch.zeros(*chosen.shape[:2], shape[1:].numel(), dtype=torch.bool, device=ctx.x.device)
                return mask.scatter_(2, chosen, True).view(stop - first, *shape)

            baseline = baseline_image(ctx.x, self.baseline, generator(self.seed + 1))
            perturbed = masked_scores(
                ctx.required_model, ctx.x, ctx.y, baseline, self.runs, mask_of, self.softmax, self.memory_budget
            )
            ctx.cache[key] = clean_scores(ctx, self.softmax).unsqueeze(1) - perturbed
        return ctx.cache[key]

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        relevance = feature_relevance(ctx.a, ctx.x, self.features, self.pooling)
        subsets = self.subsets(ctx)
        attributed = relevance.gather(1, subsets.flatten(1)).view(subsets.shape).sum(-1)
        return pearson(attributed, self.drops(ctx)).to(ctx.a.dtype)
