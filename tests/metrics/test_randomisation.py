"""Randomisation metrics: bounds, seeds, what is cached, the model left untouched."""

from __future__ import annotations

import pytest
import torch

from tests.metrics.toolkit import batch, context, gradient_x_input
from xaisearch.metrics import ModelExplainer, make_metric
from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.randomisation import discrete_entropy
from xaisearch.metrics.similarity import ssim


def test_ssim_of_a_map_with_itself_is_one_and_shift_invariant_in_scale():
    a = torch.rand(2, 12, 12, dtype=torch.float64)
    for form in ("2d", "flat1d"):
        torch.testing.assert_close(ssim(a, a, form), torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(ssim(3 * a, 3 * a.flip(-1), form), ssim(a, a.flip(-1), form))


def test_random_logit_of_a_class_blind_explainer_is_one():
    model, x, y, a, s = batch(3)
    blind = ModelExplainer(model, lambda m, x, y: gradient_x_input(m, x, torch.zeros_like(y)))
    ctx = MetricContext(x=x, y=y, a=blind(x, y), model=model, explainer=blind)
    torch.testing.assert_close(make_metric("random_logit")(ctx), torch.ones(3))


def test_random_logit_draws_another_class_uniformly_and_once_per_batch():
    model, x, y, a, s = batch(3)
    seen = []
    spy = ModelExplainer(model, lambda m, x, y: (seen.append(y.clone()), gradient_x_input(m, x, y))[1])
    ctx = MetricContext(x=x.repeat(200, 1, 1, 1), y=y.repeat(200), a=a.repeat(200, 1, 1, 1), model=model, explainer=spy)
    make_metric("random_logit", seed=1)(ctx)
    other, calls = torch.cat(seen), len(seen)  # the explainer may be called in chunks
    assert (other != ctx.y).all()
    counts = torch.bincount(other[ctx.y == 0], minlength=3)
    assert counts[0] == 0 and abs(int(counts[1]) - int(counts[2])) < 60
    make_metric("random_logit", seed=1)(ctx)
    assert torch.equal(torch.cat(seen[calls:]), other) and len(ctx.cache) == 1


def test_mprt_of_a_weight_independent_explainer_is_one_and_costs_one_explanation_per_layer():
    model, x, y, a, s = batch(2)
    calls = []
    blind = ModelExplainer(model, lambda m, x, y: (calls.append(m), x.clone())[1])
    ctx = MetricContext(x=x, y=y, a=x.clone(), model=model, explainer=blind)
    torch.testing.assert_close(make_metric("mprt")(ctx), torch.ones(2))
    layers = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")]
    assert len(calls) == len(layers) and all(m is not model for m in calls)


def test_mprt_cascade_randomises_from_the_top():
    model, x, y, a, s = batch(2)
    firsts = []

    def record(m, x, y):
        changed = [n for (n, p), q in zip(m.named_parameters(), model.parameters()) if not torch.equal(p, q)]
        firsts.append(changed)
        return gradient_x_input(m, x, y)

    ctx = MetricContext(x=x, y=y, a=a, model=model, explainer=ModelExplainer(model, record))
    scores = make_metric("mprt")(ctx)
    assert firsts[0] and all(n.startswith("classifier.2") for n in firsts[0])
    assert len(firsts[-1]) == len(list(model.parameters()))  # at the end every layer is random
    assert torch.isfinite(scores).all() and (scores.abs() <= 1).all()


def test_randomised_weights_are_cached_per_model_across_batches():
    model, x, y, a, s = batch(2)
    model_cache = {}
    make_metric("efficient_mprt")(context(model, x, y, a, s, model_cache=model_cache))
    kept = dict(model_cache)
    make_metric("mprt")(context(model, x[:1], y[:1], a[:1], s[:1], model_cache=model_cache))
    assert all(model_cache[k] is v for k, v in kept.items()) and len(model_cache) == 2


def test_discrete_entropy_matches_numpy_histograms():
    import numpy as np

    scipy_stats = pytest.importorskip("scipy.stats")

    values = torch.randn(3, 500, dtype=torch.float64)
    expected = [scipy_stats.entropy(np.histogram(v.numpy(), bins=100)[0]) for v in values]
    torch.testing.assert_close(discrete_entropy(values, 100), torch.tensor(expected, dtype=torch.float64))
    assert discrete_entropy(torch.ones(1, 10), 100).item() == 0.0


def test_efficient_mprt_of_a_weight_independent_explainer_is_zero():
    model, x, y, a, s = batch(2)
    blind = ModelExplainer(model, lambda m, x, y: x.clone())
    ctx = MetricContext(x=x, y=y, a=x.clone(), model=model, explainer=blind)
    torch.testing.assert_close(make_metric("efficient_mprt")(ctx), torch.zeros(2))
