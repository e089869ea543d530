"""Faithfulness metrics against closed forms on linear models, where every removal is a sum."""

from __future__ import annotations

import math

import pytest
import torch

from tests.metrics.toolkit import LinearModel
from xaisearch.metrics import evaluate, make_metric
from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.perturbation import aopc, auc, baseline_image, region_steps

B, C, H, W, K = 3, 3, 6, 6, 4
BASE = 0.25


@pytest.fixture
def linear():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(K, C, H, W, generator=g, dtype=torch.float64)
    model = LinearModel(weight, torch.randn(K, generator=g, dtype=torch.float64))
    x = torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 3])
    contribution = (x - BASE) * weight[y]  # exact effect of replacing each value by BASE
    return model, x, y, contribution


def noise(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def ranked(values: torch.Tensor, descending: bool) -> list[list[int]]:
    return torch.argsort(values, dim=1, descending=descending, stable=True).tolist()


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_pixel_flipping_on_channel_features_matches_the_closed_form(linear, order):
    model, x, y, contribution = linear
    a = noise(B, C, H, W)
    steps = 12  # 108 values, 9 per step
    scores = evaluate("pixel_flipping", model, x, y, a, steps=steps, order=order, features="channel", baseline=BASE)
    flat = contribution.flatten(1)
    expected = []
    for i, ranking in enumerate(ranked(a.flatten(1), order == "morf")):
        drops = [float(flat[i, ranking[: s * 9]].sum()) for s in range(steps + 1)]
        expected.append(sum(drops) / (steps + 1))
    # softmax=True by default: compare on logits instead
    logits = evaluate(
        "pixel_flipping", model, x, y, a, steps=steps, order=order, features="channel", baseline=BASE, softmax=False
    )
    torch.testing.assert_close(logits, torch.tensor(expected, dtype=torch.float64))
    assert scores.shape == (B,)


@pytest.mark.parametrize("name, insertion", [("deletion", False), ("insertion", True)])
def test_deletion_and_insertion_are_the_trapezoid_of_the_hand_computed_curve(linear, name, insertion):
    model, x, y, contribution = linear
    a = noise(B, 1, H, W)
    steps = 4  # 36 pixels, 9 per step
    scores = evaluate(name, model, x, y, a, steps=steps, baseline=BASE, softmax=False)
    clean = model(x).gather(1, y.view(-1, 1)).squeeze(1)
    pixel = contribution.sum(1).flatten(1)
    expected = []
    for i, ranking in enumerate(ranked(a.flatten(1), True)):
        moved = [float(pixel[i, ranking[: s * 9]].sum()) for s in range(steps + 1)]
        if insertion:  # start from the baseline image, add the most relevant pixels first
            curve = [float(clean[i]) - float(pixel[i].sum()) + m for m in moved]
        else:
            curve = [float(clean[i]) - m for m in moved]
        trapezoid = sum((curve[k] + curve[k + 1]) / 2 for k in range(steps)) / steps
        expected.append(trapezoid)
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64))


def test_curve_summaries():
    curve = torch.tensor([[1.0, 0.5, 0.0], [2.0, 2.0, 2.0]])
    torch.testing.assert_close(aopc(curve), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(auc(curve), torch.tensor([0.5, 2.0]))


def greedy_regions(relevance: torch.Tensor, patch: int, regions: int, stride: int) -> list[tuple[int, int]]:
    """Reference: every candidate ranked by its sum, taken in order unless it overlaps one taken."""
    h, w = relevance.shape
    candidates = [(i, j) for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)]
    sums = torch.tensor([float(relevance[i : i + patch, j : j + patch].sum()) for i, j in candidates])
    taken: list[tuple[int, int]] = []
    for index in torch.argsort(sums, descending=True, stable=True).tolist():
        i, j = candidates[index]
        if all(abs(i - u) >= patch or abs(j - v) >= patch for u, v in taken):
            taken.append((i, j))
        if len(taken) == regions:
            break
    return taken


@pytest.mark.parametrize("candidates, stride", [("all_offsets", 1), ("grid", 2)])
def test_region_perturbation_on_a_linear_model_matches_the_closed_form(linear, candidates, stride):
    model, x, y, contribution = linear
    a = noise(B, C, H, W)
    patch, regions = 2, 5
    scores = evaluate(
        "region_perturbation", model, x, y, a, patch_size=patch, regions=regions, candidates=candidates, baseline=BASE
    )
    logits = evaluate(
        "region_perturbation",
        model,
        x,
        y,
        a,
        patch_size=patch,
        regions=regions,
        candidates=candidates,
        baseline=BASE,
        softmax=False,
    )
    pixel = contribution.sum(1)
    expected = []
    for i in range(B):
        taken = greedy_regions(a[i].sum(0), patch, regions, stride)
        drops = [0.0]
        for u, v in taken:
            drops.append(drops[-1] + float(pixel[i, u : u + patch, v : v + patch].sum()))
        drops += [drops[-1]] * (regions - len(taken))  # no free candidate left: nothing more removed
        expected.append(sum(drops) / (regions + 1))
    torch.testing.assert_close(logits, torch.tensor(expected, dtype=torch.float64))
    assert scores.shape == (B,) and torch.isfinite(scores).all()


def test_region_candidates_at_every_offset_find_an_off_grid_blob():
    relevance = torch.zeros(1, 8, 8)
    relevance[0, 1:4, 2:5] = 1.0  # a 3×3 blob off the 3-pixel grid
    steps = region_steps(relevance, patch_size=3, regions=2)
    assert torch.equal(steps[0, 1:4, 2:5], torch.ones(3, 3, dtype=torch.long))
    assert (steps == 1).sum() == 9 and (steps == 2).sum() == 9
    grid = region_steps(relevance, patch_size=3, regions=1, candidates="grid")
    assert (grid[0] == 1).sum() == 9 and not torch.equal(grid[0, 1:4, 2:5], torch.ones(3, 3, dtype=torch.long))


def test_region_steps_stop_when_no_free_candidate_is_left():
    steps = region_steps(torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(0)), patch_size=3, regions=3)
    assert ((steps == 1).sum((1, 2)) == 9).all() and not (steps == 2).any() and not (steps == 3).any()


@pytest.mark.parametrize("features", ["pixel", "channel"])
def test_faithfulness_correlation_of_exact_contributions_is_one(linear, features):
    model, x, y, contribution = linear
    scores = evaluate(
        "faithfulness_correlation", model, x, y, contribution, subset_size=5, runs=20, baseline=BASE, features=features
    )
    torch.testing.assert_close(scores, torch.ones(B, dtype=torch.float64))
    negated = evaluate(
        "faithfulness_correlation", model, x, y, -contribution, subset_size=5, runs=20, baseline=BASE, features=features
    )
    torch.testing.assert_close(negated, -torch.ones(B, dtype=torch.float64))


def test_faithfulness_correlation_is_nan_for_a_constant_map(linear):
    model, x, y, _ = linear
    scores = evaluate("faithfulness_correlation", model, x, y, torch.ones_like(x), subset_size=5, runs=10)
    assert torch.isnan(scores).all()


def test_faithfulness_correlation_draws_once_per_seed_and_caches_the_forwards(linear):
    model, x, y, contribution = linear
    metric = make_metric("faithfulness_correlation", subset_size=4, runs=10, seed=3)
    ctx = MetricContext(x=x, y=y, a=contribution, model=model)
    first = metric(ctx)
    calls = model.calls
    again = metric(MetricContext(x=x, y=y, a=noise(*x.shape, seed=2), model=model, cache=ctx.cache))
    assert model.calls == calls, "a second explanation must not run the model again"
    assert not torch.equal(first, again)
    fresh = metric(MetricContext(x=x, y=y, a=contribution, model=model))
    torch.testing.assert_close(first, fresh)
    subsets = metric.subsets(ctx)
    assert subsets.shape == (B, 10, 4)
    assert all(len(set(row)) == 4 for row in subsets.flatten(0, 1).tolist()), "drawn without replacement"
    other = make_metric("faithfulness_correlation", subset_size=4, runs=10, seed=4)
    assert not torch.equal(other.subsets(MetricContext(x=x, y=y, a=contribution, model=model)), subsets)


def test_uniform_baseline_is_seeded_per_value_within_the_sample_range(linear):
    model, x, y, _ = linear
    drawn = baseline_image(x, "uniform", torch.Generator().manual_seed(0))
    again = baseline_image(x, "uniform", torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again) and drawn.shape == x.shape
    assert drawn.flatten(1).unique(dim=None).numel() == drawn.numel(), "one draw per value, not per sample"
    low, high = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    assert ((drawn >= low) & (drawn <= high)).all()
    a = noise(*x.shape, seed=2)
    one = evaluate("pixel_flipping", model, x, y, a, steps=4, baseline="uniform", seed=1)
    two = evaluate("pixel_flipping", model, x, y, a, steps=4, baseline="uniform", seed=1)
    assert torch.equal(one, two)


def test_blur_baseline_is_a_zero_padded_box_filter():
    x = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    blurred = baseline_image(x, "blur", blur_kernel=3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    expected = torch.stack([padded[..., i : i + 5, j : j + 5] for i in range(3) for j in range(3)]).mean(0)
    torch.testing.assert_close(blurred, expected)


@pytest.mark.parametrize(
    "name, params",
    [
        ("region_perturbation", {"patch_size": 2, "regions": 6}),
        ("faithfulness_correlation", {"subset_size": 5, "runs": 12}),
        ("insertion", {"steps": 6}),
        ("deletion", {"steps": 6, "features": "channel"}),
    ],
)
def test_memory_budget_does_not_change_results(linear, name, params):
    model, x, y, _ = linear
    a = noise(*x.shape, seed=2)
    big = evaluate(name, model, x, y, a, **params)
    small = evaluate(name, model, x, y, a, memory_budget=1, **params)
    torch.testing.assert_close(big, small)


@pytest.mark.parametrize(
    "name, morf, lerf",
    [
        ("pixel_flipping", "higher", "lower"),
        ("region_perturbation", "higher", "lower"),
        ("deletion", "lower", "higher"),
        ("insertion", "higher", "lower"),
    ],
)
def test_direction_follows_the_order(name, morf, lerf):
    assert make_metric(name, order="morf").direction == morf
    assert make_metric(name, order="lerf").direction == lerf


def test_the_exact_contributions_beat_their_negation(linear):
    model, x, y, contribution = linear
    for name, params in [
        ("pixel_flipping", {"steps": 6}),
        ("region_perturbation", {"patch_size": 2, "regions": 4}),
        ("deletion", {"steps": 6}),
        ("insertion", {"steps": 6}),
    ]:
        metric = make_metric(name, baseline=BASE, softmax=False, **params)
        good = metric(MetricContext(x=x, y=y, a=contribution, model=model))
        bad = metric(MetricContext(x=x, y=y, a=-contribution, model=model))
        better = good > bad if metric.direction == "higher" else good < bad
        assert better.all(), name


def test_unknown_baseline_is_named(linear):
    model, x, y, _ = linear
    with pytest.raises(ValueError, match="unknown baseline 'grey'"):
        evaluate("pixel_flipping", model, x, y, x, baseline="grey")
    with pytest.raises(ValueError, match="patch_size"):
        evaluate("region_perturbation", model, x, y, x, patch_size=7)
    assert not math.isnan(evaluate("region_perturbation", model, x, y, x, patch_size=6, regions=1)[0])


@pytest.mark.parametrize(
    "name, params",
    [
        ("pixel_flipping", {"steps": 4, "baseline": "uniform"}),
        ("region_perturbation", {"patch_size": 2, "regions": 3}),
        ("faithfulness_correlation", {"subset_size": 4, "runs": 6}),
        ("deletion", {"steps": 4}),
        ("insertion", {"steps": 4, "features": "channel"}),
    ],
)
@pytest.mark.parametrize("channels", [1, C])
def test_faithfulness_metrics_never_change_their_inputs(linear, name, params, channels):
    model, x, y, _ = linear
    a = noise(B, channels, H, W)
    copies = x.clone(), y.clone(), a.clone()
    scores = evaluate(name, model, x, y, a, **params)
    assert scores.shape == (B,) and scores.dtype == x.dtype and torch.isfinite(scores).all()
    assert torch.equal(x, copies[0]) and torch.equal(y, copies[1]) and torch.equal(a, copies[2])


@pytest.mark.parametrize("name", ["pixel_flipping", "deletion", "insertion", "region_perturbation"])
def test_a_nan_attribution_has_no_removal_order_so_its_score_is_nan(name):
    """Sorting NaN relevance gives some order, and so a finite, made-up score; the sample is NaN."""

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 16 * 16, 3)
    )
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    a = torch.rand(2, 3, 16, 16)
    a[1] = float("nan")
    params = {"patch_size": 4, "regions": 4} if name == "region_perturbation" else {"steps": 4}
    scores = evaluate(name, model.eval(), x, y, a, **params)
    assert torch.isfinite(scores[0]) and torch.isnan(scores[1])
