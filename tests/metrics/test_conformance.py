"""The contract every registered metric keeps (base.py), tested for all of them at once.

In the manner of Optuna's storage test cases: parametrised over ``available()``, so a new
metric is tested as soon as it is registered. ``CHEAP`` only shrinks step counts for speed.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.metrics.toolkit import batch, context
from xaisearch.metrics import available, make_metric
from xaisearch.metrics.base import CATEGORIES, DIRECTIONS
from xaisearch.metrics.registry import METRICS

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


def metric(name):
    return make_metric(name, **CHEAP.get(name, {}))


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.fixture(scope="module")
def parts():
    return batch(3, seed=0)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_declared(name):
    cls = METRICS[name]
    assert cls.name == name
    instance = metric(name)  # direction may be a property of the parameters (e.g. order)
    assert instance.direction in DIRECTIONS and instance.category in CATEGORIES
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert repr(instance).startswith(cls.__name__)
    assert instance.params() == {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


@pytest.mark.parametrize("name", NAMES)
def test_one_float_per_sample_inputs_and_global_state_unchanged(name, parts):
    model, x, y, a, s = parts
    before = [t.clone() for t in (x, y, a, s)]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    scores = metric(name)(context(model, x, y, a, s))
    assert scores.shape == (3,) and scores.dtype == x.dtype and scores.device == x.device
    assert all(torch.equal(t, b) for t, b in zip((x, y, a, s), before)), "a metric changed its inputs"
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()), "a metric changed the model"
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng), "a metric used or reseeded the global RNG"
    assert not torch.isinf(scores).any()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_with_warm_caches(name, parts):
    model, x, y, a, s = parts
    cache, model_cache = {}, {}
    first = metric(name)(context(model, x, y, a, s, cache=cache, model_cache=model_cache))
    fresh = metric(name)(context(model, x, y, a, s))
    warm = metric(name)(context(model, x, y, a, s, cache=cache, model_cache=model_cache))
    assert same(first, fresh) and same(first, warm)


@pytest.mark.parametrize("name", NAMES)
def test_a_sample_does_not_depend_on_its_batch(name, parts):
    model, x, y, a, s = parts
    together = metric(name)(context(model, x, y, a, s))
    alone = metric(name)(context(model, x[1:2], y[1:2], a[1:2], s[1:2]))
    stochastic = any(f.name == "seed" for f in dataclasses.fields(METRICS[name]))
    if not stochastic:  # seeded draws are per batch, so only deterministic metrics compare exactly
        torch.testing.assert_close(alone, together[1:2], equal_nan=True, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if METRICS[n].needs_mask])
def test_empty_mask_gives_nan(name, parts):
    model, x, y, a, s = parts
    s = s.clone()
    s[1] = 0
    scores = metric(name)(context(model, x, y, a, s))
    assert torch.isnan(scores[1])


@pytest.mark.parametrize("name", NAMES)
def test_missing_requirements_are_named(name, parts):
    model, x, y, a, s = parts
    cls = METRICS[name]
    ctx = context(model, x, y, a, s)
    for field, needed in (("s", cls.needs_mask), ("model", cls.needs_model), ("explainer", cls.needs_explainer)):
        if needed:
            with pytest.raises(ValueError, match=name):
                metric(name)(dataclasses.replace(ctx, **{field: None}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name, parts):
    model, x, y, a, s = parts
    on_cpu = metric(name)(context(model, x, y, a, s))
    gpu_model = batch(3, seed=0)[0].cuda()
    on_gpu = metric(name)(context(gpu_model, x.cuda(), y.cuda(), a.cuda(), s.cuda()))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, equal_nan=True, rtol=1e-3, atol=1e-4)
