"""Complexity metrics on maps whose entropy and counts are known."""

from __future__ import annotations

import math

import pytest
import torch

from xaisearch.metrics import evaluate

Y = torch.zeros(2, dtype=torch.long)


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_entropy_of_a_uniform_map_is_log_n_and_of_a_single_pixel_zero():
    x = torch.rand(2, 3, 10, 10, generator=gen())
    a = torch.zeros_like(x)
    a[0] = -0.3  # |a| pooled over channels: the same at every pixel, signs do not matter
    a[1, 1, 4, 4] = 5.0
    scores = evaluate("complexity", None, x, Y, a)
    torch.testing.assert_close(scores, torch.tensor([math.log(100), 0.0]))


def test_entropy_of_two_equal_pixels_is_log_two_and_an_all_zero_map_is_nan():
    x = torch.rand(2, 3, 4, 4, generator=gen())
    a = torch.zeros(2, 1, 4, 4)
    a[0, 0, 0, 0], a[0, 0, 3, 3] = 2.0, -2.0
    scores = evaluate("complexity", None, x, Y, a)
    assert scores[0].item() == pytest.approx(math.log(2)) and math.isnan(scores[1])


def test_entropy_is_per_sample_and_scale_free():
    x = torch.rand(2, 3, 6, 6, generator=gen())
    a = torch.rand(2, 3, 6, 6, generator=gen())
    alone = evaluate("complexity", None, x[:1], Y[:1], a[:1])
    scaled = evaluate("complexity", None, x, Y, a * torch.tensor([1.0, 1000.0]).view(2, 1, 1, 1))
    torch.testing.assert_close(scaled[:1], alone)


def test_effective_complexity_counts_pixels_above_the_relative_threshold():
    x = torch.rand(2, 3, 4, 4, generator=gen())
    a = torch.zeros(2, 3, 4, 4)
    a[0, 0, 0, :3] = torch.tensor([1.0, 0.5, 0.05])  # relative 1, 0.5, 0.05
    a[1] = 0.0  # an all-zero map has no effective pixel
    scores = evaluate("effective_complexity", None, x, Y, a, eps=0.1)
    torch.testing.assert_close(scores, torch.tensor([2.0, 0.0]))
    scaled = evaluate("effective_complexity", None, x, Y, a * 1e-3, eps=0.1)
    torch.testing.assert_close(scaled, scores)
    raw = evaluate("effective_complexity", None, x, Y, a * 1e-3, eps=0.1, normalise=False)
    torch.testing.assert_close(raw, torch.tensor([0.0, 0.0]))


def test_effective_complexity_of_one_sample_does_not_depend_on_its_batch():
    x = torch.rand(2, 3, 6, 6, generator=gen())
    a = torch.randn(2, 3, 6, 6, generator=gen())
    alone = evaluate("effective_complexity", None, x[:1], Y[:1], a[:1], eps=0.2)
    a[1] *= 1000
    together = evaluate("effective_complexity", None, x, Y, a, eps=0.2)
    assert together[0] == alone[0]


@pytest.mark.parametrize("name", ["complexity", "effective_complexity"])
def test_signed_pooling_is_refused(name):
    x = torch.rand(1, 3, 4, 4, generator=gen())
    with pytest.raises(ValueError, match="non-negative pooling"):
        evaluate(name, None, x, Y[:1], torch.randn(x.shape, generator=gen()), pooling="sum")


@pytest.mark.parametrize("name", ["complexity", "effective_complexity"])
def test_complexity_metrics_never_change_their_inputs(name):
    x, a = torch.rand(2, 3, 5, 5, generator=gen()), torch.rand(2, 3, 5, 5, generator=gen())
    copies = x.clone(), a.clone()
    scores = evaluate(name, None, x, Y, a)
    assert scores.shape == (2,) and scores.dtype == a.dtype
    assert torch.equal(x, copies[0]) and torch.equal(a, copies[1])
