"""Suites: pinned contents, shared and cached work across metrics and trials; the objective."""

from __future__ import annotations

import math

import pytest
import torch

from tests.metrics.toolkit import batch, gradient_x_input, masks
from xaisearch.metrics import Metric, MetricSuite, ModelExplainer, WeightedMetric, make_metric, suite_entries
from xaisearch.metrics.suite import EvalBatch
from xaisearch.search.normalisation import multi_objective, normalise_mean, weighted_objective


class CountingModel(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.images = inner, 0

    def forward(self, x):
        self.images += len(x)
        return self.inner(x)


def test_paper_suite_settings():
    entries = {e.metric.name: e.metric for e in suite_entries("paper")}
    assert list(entries) == [
        "pixel_flipping",
        "region_perturbation",
        "faithfulness_correlation",
        "avg_sensitivity",
        "max_sensitivity",
        "relevance_rank_accuracy",
        "relevance_mass_accuracy",
        "sparseness",
        "complexity",
        "random_logit",
    ]
    assert entries["pixel_flipping"].steps == 112 and entries["pixel_flipping"].baseline == "zero"
    assert (entries["region_perturbation"].patch_size, entries["region_perturbation"].regions) == (14, 50)
    assert (entries["faithfulness_correlation"].subset_size, entries["faithfulness_correlation"].runs) == (501, 100)
    assert entries["random_logit"].ssim == "flat1d"
    assert entries["avg_sensitivity"] == make_metric("avg_sensitivity")  # the paper's settings are our defaults
    assert suite_entries("paper", 48)[1].metric.patch_size == 3


def test_fast_suite_is_cheap_and_unknown_suites_are_named():
    metrics = [e.metric for e in suite_entries("fast")]
    assert sum(m.forwards_per_sample for m in metrics) <= 10
    assert sum(m.explanations_per_sample for m in metrics) == 0
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        suite_entries("nope")


def test_a_suite_missing_a_metric_says_which(monkeypatch):
    from xaisearch.metrics import registry
    from xaisearch.registry import Registry

    without: Registry[type[Metric]] = Registry("metric")  # the registry as if complexity were not registered
    for name, cls in registry.METRICS.items():
        if name != "complexity":
            without.add(name, cls)
    monkeypatch.setattr(registry, "METRICS", without)
    with pytest.raises(ValueError, match="complexity"):
        suite_entries("paper")


def test_suite_passes_its_explainer_and_caches_rule_independent_work_across_trials():
    model, x, y, a, s = batch(4, seed=1)
    counting = CountingModel(model).eval()
    batches = [EvalBatch(x[:2], y[:2], s[:2]), EvalBatch(x[2:], y[2:], s[2:])]
    entries = [
        WeightedMetric(make_metric(name, **params))
        for name, params in [
            ("pixel_flipping", {"steps": 4}),
            ("avg_sensitivity", {"samples": 3}),
            ("max_sensitivity", {"samples": 3}),
            ("random_logit", {}),
            ("relevance_rank_accuracy", {}),
            ("pointing_game", {}),
            ("auc", {}),
        ]
    ]
    suite = MetricSuite(entries)
    explained = []

    def explain(m, x, y):
        explained.append(len(x))
        return gradient_x_input(m, x, y)

    first = suite.score(counting, batches, ModelExplainer(counting, explain))
    first_explained = sum(explained)
    # per image: 1 scored + 3 shared noisy + 1 other class explanations
    assert first_explained == 4 * (1 + 3 + 1)
    counting.images = 0
    explained.clear()
    second = suite.score(counting, batches, ModelExplainer(counting, explain))
    # second trial: the same explanations, clean outputs and classes came from the cache: only
    # the explanations' own forwards and the 4 curve steps
    assert sum(explained) == first_explained
    assert counting.images == sum(explained) + 4 * 4
    for name in first:
        assert first[name].shape == (4,)
        torch.testing.assert_close(first[name], second[name], equal_nan=True)


def test_suite_accepts_a_composite_config(tmp_path):
    pytest.importorskip("zennit")
    from xaisearch.explain.config import ExplainerConfig
    from xaisearch.explain.methods import attribute, build_composite
    from xaisearch.models.ref import ModelRef

    model, x, y, a, s = batch(2, seed=2)
    config = ExplainerConfig(model=ModelRef(name="tiny", num_classes=3, input_shape=(3, 16, 16)), method="gradient")
    suite = MetricSuite([WeightedMetric(make_metric("max_sensitivity", samples=2))])
    scores = suite.score(model, [EvalBatch(x, y, s)], config.model_dump(mode="json"))
    expected = attribute(model, build_composite(config, model), x, y)
    torch.testing.assert_close(expected, gradient_x_input(model, x, y) / x, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(scores["max_sensitivity"]).all()


def test_weighted_objective_orients_by_direction_and_normalises():
    entries = [WeightedMetric(make_metric("sparseness"), 1.0), WeightedMetric(make_metric("avg_sensitivity"), 3.0)]
    means = {"sparseness": 0.6, "avg_sensitivity": 0.2}
    assert weighted_objective(means, entries) == pytest.approx((0.6 - 3 * 0.2) / 4)
    trials = [{"sparseness": 0.4, "avg_sensitivity": 0.4}, {"sparseness": 0.8, "avg_sensitivity": 0.1}]
    # seed z-scores: sparseness (0.6-0.6)/0.28 = 0; sensitivity (0.2-0.25)/(0.15·√2), lower is better
    assert weighted_objective(means, entries, "seed", trials) == pytest.approx(3 * 0.05 / (0.15 * math.sqrt(2)) / 4)
    assert normalise_mean(0.7, [0.5, 0.7, 0.9], "seed") == pytest.approx(0.0)
    assert normalise_mean(0.9, [0.5, 0.7, 0.9], "seed") == pytest.approx(1.0)
    assert math.isnan(weighted_objective({"sparseness": float("nan"), "avg_sensitivity": 0.1}, entries))


def test_multi_objective_directions_come_from_the_metrics():
    entries = [WeightedMetric(make_metric("sparseness")), WeightedMetric(make_metric("random_logit"))]
    values, directions = multi_objective({"sparseness": 0.5, "random_logit": 0.3}, entries)
    assert values == [0.5, 0.3] and directions == ["maximize", "minimize"]
    with pytest.raises(ValueError, match="unknown metrics"):
        multi_objective({}, entries, ["auc"])


def test_masks_helper_has_no_empty_mask():
    assert (masks(5).sum((1, 2, 3)) > 0).all()


def test_evaluate_takes_an_exported_composite_file_as_explainer(tmp_path):
    pytest.importorskip("zennit")
    from xaisearch.explain.config import ExplainerConfig
    from xaisearch.metrics import evaluate
    from xaisearch.models.ref import ModelRef

    model, x, y, a, s = batch(2, seed=2)
    config = ExplainerConfig(model=ModelRef(name="tiny", num_classes=3, input_shape=(3, 16, 16)), method="gradient")
    path = config.save(tmp_path / "best_composite.json")
    gradient = gradient_x_input(model, x, y) / x
    from_file = evaluate("mprt", model, x, y, gradient, s, explainer=str(path))
    by_callable = evaluate(
        "mprt", model, x, y, gradient, s, explainer=ModelExplainer(model, lambda m, x, y: gradient_x_input(m, x, y) / x)
    )
    torch.testing.assert_close(from_file, by_callable, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="explains again"):
        evaluate("random_logit", model, x, y, a)
