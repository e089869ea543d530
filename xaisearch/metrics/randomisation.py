"""Randomisation: does the explanation depend on what it should depend on (class, weights)?

Randomised weights do not depend on the explanation: each randomisable layer (a module with
``reset_parameters``, as Quantus) is re-initialised once per worker on a CPU copy of the model,
by its own ``reset_parameters`` with the CPU generator seeded ``seed + 1`` (Quantus 0.6.0's
convention, so its randomised models are reproduced exactly; the global generator is forked and
restored around it), and kept in ``ctx.model_cache``. The model itself is never modified:
randomised models are deep copies loaded with those weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from xaisearch.metrics.base import Metric, MetricContext, ModelBoundExplainer, generator
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.execution import explain_in_chunks
from xaisearch.metrics.parameters import Count, Seed
from xaisearch.metrics.pooling import Normalisation, Pooling, normalise_per_sample, pool_channels
from xaisearch.metrics.ranking import spearman
from xaisearch.metrics.similarity import SSIMForm, ssim

LayerOrder = Literal["top_down", "bottom_up"]


def randomised_layers(ctx: MetricContext, seed: int) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(module name, randomised state) for every randomisable module, in ``named_modules`` order."""
    key = ("randomised_layers", seed, id(ctx.model))
    if key not in ctx.model_cache:
        device = next(ctx.required_model.parameters()).device
        scratch_model = copy.deepcopy(ctx.required_model).cpu()
        layers = []
        for name, module in scratch_model.named_modules():
            if not hasattr(module, "reset_parameters"):
                continue
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed + 1)
                module.reset_parameters()
            layers.append((name, {k: v.detach().to(device).clone() for k, v in module.state_dict().items()}))
        if not layers:
            raise ValueError("the model has no module with reset_parameters to randomise")
        ctx.model_cache[key] = layers
    return ctx.model_cache[key]


def _explain_with(ctx: MetricContext, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if not isinstance(ctx.explainer, ModelBoundExplainer):
        raise ValueError(
            "randomisation metrics explain randomised copies of the model: pass a composite config or a "
            "ModelExplainer (an explainer with .with_model(model)), not a bare callable"
        )
    return explain_in_chunks(ctx.explainer.with_model(model), model, x, y)


@METRICS.register()
@dataclass(frozen=True)
class RandomLogit(Metric):
    """SSIM between the explanation of the target class and of a random other class (Sixt et al. 2020).

    Pinned: the other class is uniform over the K − 1 other classes, drawn once per batch from
    ``seed`` (Quantus re-seeds NumPy's global generator with 42 per batch, metrics.md §2.4 #6);
    K from the model's output unless ``num_classes`` is given. Maps pooled by channel ``sum``,
    each divided by its own second moment (Pahde et al.), no abs. ``ssim="2d"``: SSIM on the 2-D
    maps with a 7×7 window; ``"flat1d"``: on the flattened maps, as Quantus and the paper's code
    (§2.4 #11). Lower is better: a class-sensitive explanation differs between classes.
    """

    name = "random_logit"
    category = "randomisation"
    direction = "lower"
    needs_model = True
    needs_explainer = True
    explanations_per_sample = 1

    ssim: SSIMForm = "2d"
    num_classes: Count | None = None
    normalise: Normalisation = "second_moment"
    pooling: Pooling = "sum"
    window: Count = 7
    seed: Seed = 0

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        key = ("random_other_class", self.num_classes, self.seed)
        if key not in ctx.cache:
            classes = self.num_classes
            if classes is None:
                with torch.no_grad():
                    classes = ctx.required_model(ctx.x[:1]).shape[-1]
            if classes < 2:
                raise ValueError(f"random_logit needs at least 2 classes, got {classes}")
            offset = torch.randint(1, classes, (len(ctx.y),), generator=generator(self.seed)).to(ctx.y.device)
            ctx.cache[key] = (ctx.y + offset) % classes
        other = ctx.cache[key]
        a_other = explain_in_chunks(ctx.required_explainer, ctx.model, ctx.x, other)
        maps = [normalise_per_sample(pool_channels(m, self.pooling).double(), self.normalise) for m in (ctx.a, a_other)]
        clean, other_class = maps
        return ssim(clean, other_class, form=self.ssim, window=self.window).to(ctx.x.dtype)


@METRICS.register()
@dataclass(frozen=True)
class MPRT(Metric):
    """Cascading model-parameter randomisation test (Adebayo et al. 2018).

    Layers are randomised cumulatively from the output (``top_down``) or the input; after each
    step the batch is explained and compared with the clean explanation by Spearman's rank
    correlation over pixels (maps pooled ``sum_abs`` = Quantus' abs on the channel-summed map).
    The score is the mean over the randomised models only — the unrandomised model's trivial 1.0
    does not enter (Quantus' ``return_average_correlation`` includes it, metrics.md §2.4 #4).
    Lower is better. Costs one explanation per randomisable layer.
    """

    name = "mprt"
    category = "randomisation"
    direction = "lower"
    needs_model = True
    needs_explainer = True

    order: LayerOrder = "top_down"
    pooling: Pooling = "sum_abs"
    seed: Seed = 42

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        layers = randomised_layers(ctx, self.seed)
        if self.order == "top_down":
            layers = layers[::-1]
        working = copy.deepcopy(ctx.required_model)
        clean = pool_channels(ctx.a, self.pooling).flatten(1)
        similarities = []
        for name, state in layers:
            working.get_submodule(name).load_state_dict(state)
            randomised = pool_channels(_explain_with(ctx, working, ctx.x, ctx.y), self.pooling).flatten(1)
            similarities.append(spearman(clean, randomised))
        return torch.stack(similarities).mean(0).to(ctx.x.dtype)


@METRICS.register()
@dataclass(frozen=True)
class EfficientMPRT(Metric):
    """Relative rise in explanation complexity after randomising all layers (Hedström et al. 2023, eMPRT).

    score = (H(a_rand) − H(a)) / H(a), H = Shannon entropy (nats) of a ``bins``-bin histogram of
    the sample's pooled map over its own [min, max] (Quantus' ``discrete_entropy`` with its
    default 100 bins), a_rand = the explanation of the fully randomised model. Maps pooled by
    channel ``sum``, not normalised (histograms are scale-free). Higher is better: a faithful
    explainer's maps lose structure when the model does. NaN for a constant clean map.
    """

    name = "efficient_mprt"
    category = "randomisation"
    direction = "higher"
    needs_model = True
    needs_explainer = True
    explanations_per_sample = 1

    bins: Count = 100
    pooling: Pooling = "sum"
    seed: Seed = 42

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        self.check(ctx)
        key = ("fully_randomised", self.seed, id(ctx.model))
        if key not in ctx.model_cache:
            randomised = copy.deepcopy(ctx.required_model)
            for name, state in randomised_layers(ctx, self.seed):
                randomised.get_submodule(name).load_state_dict(state)
            ctx.model_cache[key] = randomised
        a_random = _explain_with(ctx, ctx.model_cache[key], ctx.x, ctx.y)
        clean = discrete_entropy(pool_channels(ctx.a, self.pooling).flatten(1), self.bins)
        random = discrete_entropy(pool_channels(a_random, self.pooling).flatten(1), self.bins)
        return ((random - clean) / clean).masked_fill(clean == 0, float("nan")).to(ctx.x.dtype)


def discrete_entropy(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Entropy (nats) of each row's histogram with ``bins`` equal bins over the row's [min, max]."""
    values = values.double()
    low, high = values.amin(1, keepdim=True), values.amax(1, keepdim=True)
    width = torch.where(high > low, high - low, torch.ones_like(high))
    index = ((values - low) * (bins / width)).floor().long().clamp(0, bins - 1)
    counts = torch.zeros(len(values), bins, dtype=torch.float64, device=values.device)
    counts.scatter_add_(1, index, torch.ones_like(values))
    p = counts / values.shape[1]
    return -(p * p.clamp(min=1e-300).log()).sum(1)
