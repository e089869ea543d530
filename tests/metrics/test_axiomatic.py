"""Completeness on a linear model, where gradient × (input − baseline) is exactly complete."""

from __future__ import annotations

import pytest
import torch

from tests.metrics.toolkit import LinearModel
from xaisearch.metrics import evaluate, make_metric
from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.perturbation import baseline_image


@pytest.fixture
def linear():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    model = LinearModel(weight, torch.randn(4, generator=g, dtype=torch.float64))
    x = torch.rand(3, 3, 5, 5, generator=g, dtype=torch.float64)
    return model, x, torch.tensor([0, 3, 1]), weight


@pytest.mark.parametrize("baseline", ["zero", 0.4, (0.1, 0.2, 0.3), "black", "mean"])
def test_gradient_times_input_minus_baseline_is_complete(linear, baseline):
    model, x, y, weight = linear
    a = (x - baseline_image(x, baseline)) * weight[y]
    scores = evaluate("completeness", model, x, y, a, baseline=baseline)
    torch.testing.assert_close(scores, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_the_gap_is_the_unexplained_output_change(linear):
    model, x, y, weight = linear
    a = x * weight[y]  # complete w.r.t. the zero image, not w.r.t. 0.4
    scores = evaluate("completeness", model, x, y, a, baseline=0.4)
    expected = (0.4 * weight[y]).flatten(1).sum(1).abs()
    torch.testing.assert_close(scores, expected)
    assert make_metric("completeness").direction == "lower"


def test_the_baseline_output_is_computed_once_per_batch(linear):
    model, x, y, weight = linear
    metric = make_metric("completeness")
    ctx = MetricContext(x=x, y=y, a=x * weight[y], model=model)
    metric(ctx)
    calls = model.calls
    metric(
        MetricContext(
            x=x,
            y=y,
            a=torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype),
            model=model,
            cache=ctx.cache,
        )
    )
    assert model.calls == calls


def test_completeness_accepts_a_pixel_map_and_never_changes_inputs(linear):
    model, x, y, weight = linear
    a = (x * weight[y]).sum(1, keepdim=True)
    copies = x.clone(), a.clone()
    scores = evaluate("completeness", model, x, y, a)
    torch.testing.assert_close(scores, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(x, copies[0]) and torch.equal(a, copies[1])
