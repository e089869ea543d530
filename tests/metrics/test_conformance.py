"""The contract every registered metric keeps (base.py), tested for all of them at once.

The checks are the shipped suite's (``xaisearch.testing.metrics``), parametrised over
``available()`` in the manner of Optuna's storage test cases, so a new metric is tested as soon
as it is registered. ``CHEAP`` only shrinks step counts for speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pytest
import torch

from xaisearch.metrics import available, make_metric
from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.catalog import METRICS
from xaisearch.metrics.complexity import Sparseness
from xaisearch.testing import metrics as conformance
from xaisearch.testing.metrics import MetricBatch, small_batch

CHEAP = {
    "pixel_flipping": {"steps": 4},
    "deletion": {"steps": 4},
    "insertion": {"steps": 4},
    "region_perturbation": {"patch_size": 2, "regions": 4},
    "faithfulness_correlation": {"subset_size": 8, "runs": 6},
    "avg_sensitivity": {"samples": 3},
    "max_sensitivity": {"samples": 3},
    "local_lipschitz": {"samples": 3},
}
NAMES = available()


def metric(name: str) -> Metric:
    return make_metric(name, **CHEAP.get(name, {}))


@pytest.fixture(scope="module")
def parts() -> MetricBatch:
    return small_batch(3, seed=0)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_declared(name: str) -> None:
    instance = metric(name)
    assert METRICS.get(name).name == name and type(instance) is METRICS.get(name)
    conformance.check_metadata(instance)


@pytest.mark.parametrize("name", NAMES)
def test_one_float_per_sample_inputs_and_global_state_unchanged(name: str, parts: MetricBatch) -> None:
    conformance.check_scores_and_inputs(metric(name), parts)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_with_warm_caches(name: str, parts: MetricBatch) -> None:
    conformance.check_deterministic(metric(name), parts)


@pytest.mark.parametrize("name", NAMES)
def test_a_sample_does_not_depend_on_its_batch(name: str, parts: MetricBatch) -> None:
    conformance.check_batch_independence(metric(name), parts)


@pytest.mark.parametrize("name", [n for n in NAMES if METRICS.get(n).needs_mask])
def test_empty_mask_gives_nan(name: str, parts: MetricBatch) -> None:
    conformance.check_empty_mask_gives_nan(metric(name), parts)


@pytest.mark.parametrize("name", NAMES)
def test_missing_requirements_are_named(name: str, parts: MetricBatch) -> None:
    conformance.check_missing_requirements_are_named(metric(name), parts)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str, parts: MetricBatch) -> None:
    conformance.check_device_agnostic(metric(name), parts, "cuda")


def test_check_metric_runs_every_check_on_its_own_batch() -> None:
    conformance.check_metric(metric("relevance_rank_accuracy"))


class TestShippedTestCase(conformance.MetricConformance):
    """The test-case class a metric written elsewhere subclasses, on one of ours."""

    metric_factory = partial(make_metric, "pixel_flipping", steps=4)


@dataclass(frozen=True)
class InputChangingSparseness(Sparseness):
    """Sparseness that doubles its attributions in place: what the suite must catch."""

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        ctx.a.mul_(2)
        return super().__call__(ctx)


def test_a_metric_that_changes_its_inputs_fails_the_suite(parts: MetricBatch) -> None:
    model, x, y, a, s = parts
    with pytest.raises(AssertionError, match="sparseness changed its inputs"):
        conformance.check_scores_and_inputs(InputChangingSparseness(), MetricBatch(model, x, y, a.clone(), s))
