"""Our faithfulness, complexity and axiomatic metrics against Quantus 0.6.0 on the same inputs.

Both sides see the same attributions (Quantus: ``normalise=False, abs=False``) on a tiny CNN
with 12×12 RGB inputs, batch 4. Where Quantus is correct on RGB the values agree to 1e-5 in
the comparable setting (e.g. our ``features="channel"``); where it deviates (metrics.md §2.4,
paper-and-data §3.6) a test shows the defect next to our behaviour. Quantus is a test-only
dependency: the package never imports it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from xaisearch.metrics import make_metric
from xaisearch.metrics.base import MetricContext
from xaisearch.metrics.perturbation import baseline_image

quantus = pytest.importorskip("quantus")

B, C, H, W = 4, 3, 12, 12
TOL = 1e-5
QUIET = {"normalise": False, "abs": False, "disable_warnings": True, "display_progressbar": False}


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(C, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * H * W, 5)
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = torch.rand(B, C, H, W, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    a = torch.randn(B, C, H, W, generator=g)
    return model, x, y, a


def run_quantus(metric, model, x, y, a, softmax):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a.numpy(),
            channel_first=True,
            device="cpu",
            softmax=softmax,
            batch_size=B,
        )
    return np.asarray(scores, dtype=np.float64)


def ours(name, model, x, y, a, cache=None, **params):
    metric = make_metric(name, **params)
    ctx = MetricContext(x=x, y=y, a=a, model=model, cache=cache if cache is not None else {})
    return metric, ctx


def max_diff(mine: torch.Tensor, theirs: np.ndarray) -> float:
    return float(np.abs(mine.double().numpy() - theirs).max())


# --- pixel flipping -------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", 0.3])
def test_pixel_flipping_on_channel_values_equals_quantus(setup, baseline):
    model, x, y, a = setup
    theirs = run_quantus(
        quantus.PixelFlipping(features_in_step=12, perturb_baseline=baseline, **QUIET), model, x, y, a, True
    )
    metric, ctx = ours("pixel_flipping", model, x, y, a, steps=36, features="channel", baseline=baseline)
    curve = metric.curve(ctx)
    assert theirs.shape == (B, 36)  # Quantus returns the curve without the clean point
    assert max_diff(curve[:, 1:], theirs) <= TOL
    clean = curve[:, :1].double().numpy()
    theirs_aopc = (clean - np.concatenate([clean, theirs], axis=1)).mean(1)
    assert max_diff(metric(ctx), theirs_aopc) <= TOL


def test_pixel_flipping_on_pixels_equals_quantus_for_a_one_channel_map(setup):
    """A B×1×H×W map broadcast to RGB ties a pixel's three values: with ``features_in_step`` a
    multiple of C, Quantus removes whole pixels, as our default ``features="pixel"``."""
    model, x, y, a = setup
    one = a[:, :1]
    theirs = run_quantus(
        quantus.PixelFlipping(features_in_step=12, perturb_baseline="black", **QUIET), model, x, y, one, True
    )
    metric, ctx = ours("pixel_flipping", model, x, y, one, steps=36, baseline="black")
    assert max_diff(metric.curve(ctx)[:, 1:], theirs) <= TOL


def test_quantus_pixel_flipping_ranks_channel_values_not_pixels(setup):
    """Defect (metrics.md §2.3.1): with an RGB map Quantus 0.6.0 counts channel values, so
    ``features_in_step`` gives C times the steps and a step may remove part of a pixel."""
    model, x, y, a = setup
    theirs = run_quantus(
        quantus.PixelFlipping(features_in_step=12, perturb_baseline="black", **QUIET), model, x, y, a, True
    )
    assert theirs.shape[1] == C * H * W // 12 == 3 * (H * W // 12)
    ranking = np.argsort(-a.numpy().reshape(B, -1), axis=1)[:, :12]
    pixels_touched = [len({int(i) % (H * W) for i in row}) for row in ranking]
    assert max(pixels_touched) > 12 // C, "the first step removes only some channels of some pixels"
    metric, ctx = ours("pixel_flipping", model, x, y, a, steps=H * W // 12, baseline="black")
    assert metric.curve(ctx).shape == (B, H * W // 12 + 1)


def test_quantus_uniform_baseline_is_one_value_per_sample():
    """Defect (metrics.md §2.3.2): Quantus' "uniform" baseline draws one value per sample."""
    from quantus.functions.perturb_func import batch_baseline_replacement_by_indices

    arr = np.zeros((2, 50))
    indices = np.tile(np.arange(10), (2, 1))
    state = np.random.get_state()
    try:
        perturbed = batch_baseline_replacement_by_indices(arr, indices, perturb_baseline="uniform")
    finally:
        np.random.set_state(state)
    assert all(len(np.unique(row[:10])) == 1 for row in perturbed)
    ours_drawn = baseline_image(torch.rand(2, 1, 5, 10), "uniform", torch.Generator().manual_seed(0))
    assert all(row.unique().numel() == 50 for row in ours_drawn.flatten(1))


@pytest.mark.skipif(hasattr(np, "trapz"), reason="np.trapz exists in this NumPy")
def test_quantus_auc_needs_the_removed_np_trapz(setup):
    """Defect (metrics.md §2.4 #8): ``return_auc_per_sample`` calls ``np.trapz`` (gone in NumPy 2.4)."""
    model, x, y, a = setup
    metric = quantus.PixelFlipping(features_in_step=144, return_auc_per_sample=True, **QUIET)
    with pytest.raises(AttributeError, match="trapz"):
        run_quantus(metric, model, x, y, a, True)


# --- region perturbation ----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_on_the_grid_equals_quantus(setup, order):
    model, x, y, a = setup
    theirs = run_quantus(
        quantus.RegionPerturbation(patch_size=3, regions_evaluation=10, order=order, perturb_baseline="black", **QUIET),
        model,
        x,
        y,
        a,
        True,
    )
    metric, ctx = ours(
        "region_perturbation",
        model,
        x,
        y,
        a,
        patch_size=3,
        regions=10,
        order=order,
        candidates="grid",
        baseline="black",
    )
    curve = metric.curve(ctx)
    assert theirs.shape == (B, 10)  # Quantus records the drops y_0 − y_k, k ≥ 1
    assert max_diff(curve[:, :1] - curve[:, 1:], theirs) <= TOL
    zero = np.zeros((B, 1))
    assert max_diff(metric(ctx), np.concatenate([zero, theirs], axis=1).mean(1)) <= TOL


def test_quantus_region_perturbation_declares_the_wrong_direction(setup):
    """Defect (metrics.md §2.6): Quantus declares lower-is-better, but MoRF records the drop, so
    a faithful map scores *higher*. On a linear model the exact contributions beat their
    negation in Quantus' own numbers; ours declares ``higher`` for MoRF."""
    _, x, y, _ = setup
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(C * H * W, 5)).eval()
    with torch.no_grad():
        linear[0 + 1].weight.copy_(torch.randn(5, C * H * W, generator=g))
    weight = linear[1].weight.detach().view(5, C, H, W)
    exact = (x - x.amin((1, 2, 3), keepdim=True)) * weight[y]
    metric = quantus.RegionPerturbation(patch_size=3, regions_evaluation=4, perturb_baseline="black", **QUIET)
    good = run_quantus(metric, linear, x, y, exact, False).mean(1)
    bad = run_quantus(metric, linear, x, y, -exact, False).mean(1)
    assert (good > bad).all()
    assert quantus.RegionPerturbation.score_direction.name == "LOWER"
    assert make_metric("region_perturbation").direction == "higher"


def test_blur_baseline_equals_quantus_blur():
    from quantus.functions.perturb_func import baseline_replacement_by_blur

    x = torch.rand(1, C, H, W, dtype=torch.float64)
    everything = tuple(np.meshgrid(np.arange(H), np.arange(W), indexing="ij"))
    theirs = baseline_replacement_by_blur(x[0].numpy(), everything, indexed_axes=[1, 2], blur_kernel_size=15)
    assert max_diff(baseline_image(x, "blur")[0], theirs) <= TOL


# --- faithfulness correlation -----------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", 0.5])
def test_faithfulness_correlation_with_the_same_subsets_equals_quantus(setup, monkeypatch, baseline):
    """Quantus draws subsets from NumPy's global RNG; we record its draws (from a private
    generator, global state untouched) and hand the same subsets to our metric's cache."""
    model, x, y, a = setup
    rng, drawn = np.random.default_rng(0), []

    def choice(n, size, replace=True):
        indices = rng.choice(n, size, replace=replace)
        drawn.append(indices)
        return indices

    monkeypatch.setattr(np.random, "choice", choice)
    runs, subset = 20, 30
    theirs = run_quantus(
        quantus.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=subset, perturb_baseline=baseline, return_aggregate=False, **QUIET
        ),
        model,
        x,
        y,
        a,
        False,
    )
    monkeypatch.undo()
    metric = make_metric(
        "faithfulness_correlation", subset_size=subset, runs=runs, features="channel", baseline=baseline
    )
    subsets = torch.from_numpy(np.stack(drawn).reshape(runs, B, subset)).transpose(0, 1)
    ctx = MetricContext(x=x, y=y, a=a, model=model, cache={metric.subset_key(x): subsets})
    assert max_diff(metric(ctx), theirs) <= TOL


def test_faithfulness_correlation_with_our_own_draws_has_quantus_distribution(setup):
    """Independent random subsets on both sides: mean scores over 5 seeds agree within sampling error."""
    model, x, y, a = setup
    params = {"subset_size": 30, "runs": 20, "features": "channel", "baseline": "black"}
    mine = (
        torch.stack(
            [
                make_metric("faithfulness_correlation", seed=s, **params)(MetricContext(x=x, y=y, a=a, model=model))
                for s in range(5)
            ]
        )
        .double()
        .numpy()
    )
    state = np.random.get_state()
    try:
        np.random.seed(0)
        metric = quantus.FaithfulnessCorrelation(
            nr_runs=20, subset_size=30, perturb_baseline="black", return_aggregate=False, **QUIET
        )
        theirs = np.stack([run_quantus(metric, model, x, y, a, False) for _ in range(5)])
    finally:
        np.random.set_state(state)
    spread = np.sqrt(mine.var(0, ddof=1) / 5 + theirs.var(0, ddof=1) / 5)
    assert (np.abs(mine.mean(0) - theirs.mean(0)) <= 4 * spread).all()


# --- complexity -------------------------------------------------------------------------------


def test_complexity_equals_quantus_on_a_pixel_map(setup):
    _, x, y, a = setup
    one = a[:, :1].double()
    theirs = run_quantus(quantus.Complexity(**{**QUIET, "abs": True}), None, x, y, one, False)
    metric, ctx = ours("complexity", None, x, y, one)
    assert max_diff(metric(ctx), theirs) <= TOL


def test_quantus_complexity_counts_channel_values_and_changes_its_input(setup):
    """Defects: on an RGB map Quantus' entropy is over C·H·W channel values (ours: over
    pixels); with ``abs=False, normalise=False`` it divides the caller's array in place (§2.4 #7)."""
    _, x, y, a = setup
    positive = a.abs().double()
    theirs = run_quantus(quantus.Complexity(**{**QUIET, "abs": True}), None, x, y, positive, False)
    stacked, ctx = ours("complexity", None, x.reshape(B, 1, C * H, W), y, positive.reshape(B, 1, C * H, W))
    assert max_diff(stacked(ctx), theirs) <= TOL
    per_pixel = make_metric("complexity")(MetricContext(x=x, y=y, a=positive))
    assert (per_pixel.numpy() < theirs - 0.5).all()  # at most ln(H·W) < ln(C·H·W)

    array = positive.numpy().copy()
    before = array.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantus.Complexity(**QUIET)(model=None, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=array, channel_first=True)
    assert not np.array_equal(array, before)
    kept = positive.clone()
    make_metric("complexity")(MetricContext(x=x, y=y, a=kept))
    assert torch.equal(kept, positive)


@pytest.mark.parametrize("normalise", [False, True])
def test_effective_complexity_equals_quantus_per_sample(setup, normalise):
    _, x, y, a = setup
    one = a[:, :1].double() * torch.tensor([1.0, 3.0, 0.1, 10.0], dtype=torch.float64).view(B, 1, 1, 1)
    eps = 0.4
    theirs = run_quantus(
        quantus.EffectiveComplexity(
            eps=eps,
            **{**QUIET, "abs": True, "normalise": normalise},
            normalise_func_kwargs={"normalise_axes": [1, 2, 3]},
        ),
        None,
        x,
        y,
        one,
        False,
    )
    metric, ctx = ours("effective_complexity", None, x, y, one, eps=eps, normalise=normalise)
    assert max_diff(metric(ctx), theirs) == 0.0


def test_quantus_effective_complexity_normalises_over_the_batch(setup):
    """Defect (metrics.md §2.4 #14): Quantus' default ``normalise_by_max`` spans the batch, so a
    sample's count changes with its batch-mates; ours is per sample."""
    _, x, y, a = setup
    one = a[:, :1].double()
    louder = one.clone()
    louder[1:] *= 1000
    metric = quantus.EffectiveComplexity(eps=0.4, abs=True, disable_warnings=True)
    alone, together = run_quantus(metric, None, x, y, one, False), run_quantus(metric, None, x, y, louder, False)
    assert alone[0] != together[0]
    mine = make_metric("effective_complexity", eps=0.4)
    assert mine(MetricContext(x=x, y=y, a=one))[0] == mine(MetricContext(x=x, y=y, a=louder))[0]


# --- completeness ---------------------------------------------------------------------------------


def test_completeness_uses_the_same_output_change_as_quantus(setup):
    """Quantus returns ``Σa == f(x) − f(b)``; its ``output_func`` hook exposes the change it
    compares against, and our gap |Σa − change| matches it."""
    model, x, y, a = setup
    changes = []

    def record(change):
        changes.append(change)
        return change

    theirs = run_quantus(
        quantus.Completeness(output_func=record, perturb_baseline="black", **QUIET), model, x, y, a, False
    )
    assert theirs.dtype == np.float64 and set(theirs) <= {0.0, 1.0}  # booleans
    metric, ctx = ours("completeness", model, x, y, a, baseline="black")
    expected = np.abs(a.double().flatten(1).sum(1).numpy() - changes[0])
    assert max_diff(metric(ctx), expected) <= TOL


def test_quantus_completeness_fails_a_complete_map_by_rounding(setup):
    """Defect: the exact float comparison is False for maps that are complete up to rounding;
    our gap is ~1e-6 for them."""
    _, x, y, _ = setup
    g = torch.Generator().manual_seed(2)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(C * H * W, 5)).eval()
    with torch.no_grad():
        linear[1].weight.copy_(torch.randn(5, C * H * W, generator=g))
    weight = linear[1].weight.detach().view(5, C, H, W)
    complete = (x - x.amin((1, 2, 3), keepdim=True)) * weight[y]
    theirs = run_quantus(quantus.Completeness(perturb_baseline="black", **QUIET), linear, x, y, complete, False)
    assert not theirs.all()
    gap = make_metric("completeness", baseline="black")(MetricContext(x=x, y=y, a=complete, model=linear))
    assert (gap <= 1e-4).all()
    assert quantus.Completeness.score_direction.name == "HIGHER" and make_metric("completeness").direction == "lower"
