"""Metric values on cases with closed forms: linear models, perfect and constant maps."""

import math

import pytest
import torch

from tests.metrics.toolkit import LinearModel
from xaisearch.metrics import evaluate


def masks(batch=4, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        top, left = torch.randint(0, size - 4, (2,), generator=g).tolist()
        s[i, 0, top : top + 3 + i % 2, left : left + 4] = 1
    return s


@pytest.mark.parametrize("name", ["relevance_mass_accuracy", "relevance_rank_accuracy"])
def test_a_map_equal_to_the_mask_localises_perfectly(name):
    s = masks()
    x = torch.rand(4, 3, 12, 12)
    a = s.expand(-1, 3, -1, -1).clone()
    assert torch.equal(evaluate(name, None, x, torch.zeros(4, dtype=torch.long), a, s), torch.ones(4))


@pytest.mark.parametrize("name", ["relevance_mass_accuracy", "relevance_rank_accuracy"])
def test_a_constant_map_scores_the_chance_level(name):
    s = masks()
    x = torch.rand(4, 3, 12, 12)
    scores = evaluate(name, None, x, torch.zeros(4, dtype=torch.long), torch.full_like(x, 0.7), s)
    torch.testing.assert_close(scores, s.mean((1, 2, 3)))


def test_rank_accuracy_counts_exact_top_k():
    s = torch.zeros(1, 1, 4, 4)
    s[0, 0, 0, :2] = 1  # k = 2
    a = torch.zeros(1, 1, 4, 4)
    a[0, 0, 0, 0] = 3.0  # in the mask
    a[0, 0, 3, 3] = 2.0  # outside
    score = evaluate("relevance_rank_accuracy", None, torch.rand(1, 3, 4, 4), torch.zeros(1, dtype=torch.long), a, s)
    assert score.item() == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["relevance_mass_accuracy", "relevance_rank_accuracy"])
def test_empty_mask_gives_nan_not_a_score(name):
    s = masks()
    s[1] = 0
    x = torch.rand(4, 3, 12, 12)
    scores = evaluate(name, None, x, torch.zeros(4, dtype=torch.long), torch.rand_like(x), s)
    assert math.isnan(scores[1]) and torch.isfinite(scores[[0, 2, 3]]).all()


def test_sparseness_of_constant_and_single_pixel_maps():
    x = torch.rand(2, 3, 10, 10)
    a = torch.zeros_like(x)
    a[0] = 1.0
    a[1, 0, 4, 4] = 5.0
    scores = evaluate("sparseness", None, x, torch.zeros(2, dtype=torch.long), a)
    torch.testing.assert_close(scores, torch.tensor([0.0, 99 / 100]))
    zero = evaluate("sparseness", None, x[:1], torch.zeros(1, dtype=torch.long), torch.zeros_like(x[:1]))
    assert math.isnan(zero.item())


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_pixel_flipping_on_a_linear_model_matches_the_closed_form(order):
    torch.manual_seed(0)
    b, c, h, w, k, steps = 3, 3, 6, 6, 4, 6
    weight, bias = torch.randn(k, c, h, w, dtype=torch.float64), torch.randn(k, dtype=torch.float64)
    model = LinearModel(weight, bias)
    x = torch.rand(b, c, h, w, dtype=torch.float64)
    y = torch.tensor([0, 2, 3])
    a = x * weight[y]  # gradient x input: the exact contribution of each value
    scores = evaluate("pixel_flipping", model, x, y, a, steps=steps, order=order, baseline=0.25, softmax=False)

    # closed form: removing pixel p lowers the logit by sum_c w_yc,p (x_c,p - 0.25)
    contribution = ((x - 0.25) * weight[y]).sum(1).flatten(1)
    ranking = torch.argsort(a.sum(1).flatten(1), dim=1, descending=order == "morf", stable=True)
    per_step = h * w // steps
    expected = []
    for i in range(b):
        drops = [0.0] + [float(contribution[i, ranking[i, : s * per_step]].sum()) for s in range(1, steps + 1)]
        expected.append(sum(drops) / (steps + 1))
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64))


def test_pixel_flipping_memory_budget_does_not_change_results():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    x, a = torch.rand(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    big = evaluate("pixel_flipping", model, x, y, a, steps=8)
    small = evaluate("pixel_flipping", model, x, y, a, steps=8, memory_budget=1)
    torch.testing.assert_close(big, small)


@pytest.mark.parametrize(
    "name, params",
    [
        ("relevance_mass_accuracy", {}),
        ("relevance_rank_accuracy", {}),
        ("sparseness", {}),
        ("pixel_flipping", {"steps": 4}),
    ],
)
def test_metrics_never_change_their_inputs(name, params):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    x, a, s = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8), masks(2, 8)
    y = torch.tensor([0, 1])
    copies = [t.clone() for t in (x, y, a, s)]
    scores = evaluate(name, model, x, y, a, s, **params)
    assert scores.shape == (2,) and scores.dtype == x.dtype
    assert all(torch.equal(t, c) for t, c in zip((x, y, a, s), copies))


def test_unknown_metric_and_parameter_are_named():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        evaluate("nope", None, x, torch.zeros(1, dtype=torch.long), x)
    with pytest.raises(ValueError, match="bad parameters"):
        evaluate("sparseness", None, x, torch.zeros(1, dtype=torch.long), x, steps=3)
