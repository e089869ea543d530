"""Robustness metrics: closed forms on a linear model, shared noisy explanations."""

from __future__ import annotations

import torch

from tests.metrics.toolkit import batch, context
from xaisearch.metrics import ModelExplainer, make_metric
from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.robustness import noisy_inputs


class Counting:
    def __init__(self, explain):
        self.explain, self.calls, self.images = explain, 0, 0

    def __call__(self, x, y):
        self.calls += 1
        self.images += len(x)
        return self.explain(x, y)


def linear_gradient_x_input(weight):
    return lambda x, y: weight[y] * x  # a linear model's gradient × input


def test_sensitivity_of_gradient_x_input_on_a_linear_model_has_a_closed_form():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2])
    explain = linear_gradient_x_input(weight)
    ctx = MetricContext(x=x, y=y, a=explain(x, y), explainer=explain)
    params = {"samples": 5, "radius": 0.1, "normalise": "none", "seed": 3}
    avg = make_metric("avg_sensitivity", **params)(ctx)
    most = make_metric("max_sensitivity", **params)(ctx)
    noise = noisy_inputs(ctx, "uniform", 5, 0.1, 3).view(5, *x.shape) - x
    change = (weight[y] * noise).sum(2).flatten(2).norm(dim=2)  # ‖Σ_c w_c δ_c‖ per copy and sample
    torch.testing.assert_close(avg, (change / x.flatten(1).norm(dim=1)).mean(0))
    torch.testing.assert_close(most, (change / x.flatten(1).norm(dim=1)).amax(0))
    assert noise.abs().max() <= 0.1


def test_an_input_independent_explainer_is_perfectly_robust():
    model, x, y, a, s = batch(2)
    const = lambda x, y: torch.ones_like(x)  # noqa: E731
    ctx = MetricContext(x=x, y=y, a=torch.ones_like(x), explainer=const)
    for name in ("avg_sensitivity", "max_sensitivity", "local_lipschitz"):
        assert torch.equal(make_metric(name, samples=3)(ctx), torch.zeros(2))


def test_avg_and_max_share_one_explanation_call_and_noise_is_cached_across_trials():
    model, x, y, a, s = batch(3)
    counting = Counting(ModelExplainer(model, lambda m, x, y: torch.ones_like(x)))
    cache = {}
    for _ in range(2):  # two trials on the same batch
        ctx = MetricContext(x=x, y=y, a=a, explainer=counting, cache=cache)
        make_metric("avg_sensitivity", samples=4)(ctx)
        make_metric("max_sensitivity", samples=4)(ctx)
    assert counting.calls == 2 and counting.images == 2 * 4 * 3  # one call per trial, all copies in it
    assert sum(key[0] == "noisy_inputs" for key in cache) == 1


def test_local_lipschitz_of_a_linear_gradient_x_input():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    x = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1])
    explain = linear_gradient_x_input(weight)
    ctx = MetricContext(x=x, y=y, a=explain(x, y), explainer=explain)
    score = make_metric("local_lipschitz", samples=6, std=0.05, normalise="none", seed=1)(ctx)
    delta = noisy_inputs(ctx, "gaussian", 6, 0.05, 1).view(6, *x.shape) - x
    ratio = (weight[y] * delta).flatten(2).norm(dim=2) / delta.flatten(2).norm(dim=2)
    torch.testing.assert_close(score, ratio.amax(0))
    assert (score <= weight[y].abs().flatten(1).amax(1) + 1e-9).all()  # bounded by max |w|


def test_sensitivity_paper_defaults():
    metric = make_metric("avg_sensitivity")
    assert (metric.samples, metric.radius, metric.denominator, metric.normalise) == (10, 0.2, "input", "second_moment")
    assert metric.explanations_per_sample == 10 and metric.direction == "lower"


def test_context_explainer_is_used_for_noisy_copies():
    model, x, y, a, s = batch(2)
    ctx = context(model, x, y, a, s)
    assert torch.isfinite(make_metric("max_sensitivity", samples=2)(ctx)).all()
