"""The metric conformance suite, shipped so that a metric written outside xaisearch can run it.

In the manner of ``optuna.testing.pytest_storages``: the contract of ``xaisearch.metrics.base``
(what a score means), as check functions every registered metric of ours passes
(``tests/metrics/test_conformance.py``). Either call

    check_metric(MyMetric(steps=4))                  # every check, on a batch built here

or the named checks one by one (``check_metadata``, ``check_scores_and_inputs``,
``check_deterministic``, ``check_batch_independence``, ``check_empty_mask_gives_nan``,
``check_missing_requirements_are_named``, ``check_device_agnostic``), or subclass
``MetricConformance`` in a test module (pytest collects ``Test*`` subclasses):

    class TestMyMetric(MetricConformance):
        metric_factory = partial(MyMetric, steps=4)

The checks run on ``small_batch()``: a tiny VGG-like CNN (eval mode, random BN statistics),
16×16 inputs of 3 classes, gradient × input attributions (autograd, no zennit) and box masks of
different sizes; any ``MetricBatch`` of one's own can be passed instead. A failed check raises
``AssertionError`` saying what was found (also under ``python -O``). pytest is not imported: it
is a test dependency, this module is part of the installed package. The device check runs when
CUDA is present (``check_metric``) or a device is named.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.metrics.base import Metric, MetricContext, ModelExplainer
from xaisearch.metrics.catalog import CATEGORIES, DIRECTIONS

SIZE = 16
CLASSES = 3


def _expect(condition: bool, failure: object) -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise AssertionError(failure)


# --- the subject batch ---------------------------------------------------------------------------


def tiny_cnn(seed: int = 0, num_classes: int = CLASSES) -> nn.Module:
    """Two Conv-BN-ReLU-MaxPool blocks and a dense head (VGG's layout and names), eval mode,
    random BN statistics. Built directly: torchvision's VGG constructor initialises a 120 M
    parameter default head first (2 s)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        classifier = nn.Sequential(nn.Linear(8 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, num_classes))
        model = nn.Sequential()
        model.add_module("features", features)
        model.add_module("flatten", nn.Flatten())
        model.add_module("classifier", classifier)
    randomize_batchnorm(model.eval(), torch.Generator().manual_seed(seed + 1))
    return model


def gradient_x_input(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient × input of the target logit, by autograd (no zennit): a cheap, exact explainer."""
    with torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        logits = model(leaf)
        (grad,) = torch.autograd.grad(logits.gather(1, y.view(-1, 1)).sum(), leaf)
    return (grad * leaf).detach()


def explainer(model: nn.Module) -> ModelExplainer:
    """Gradient × input bound to ``model`` (it can explain randomised copies: ``with_model``)."""
    return ModelExplainer(model, gradient_x_input)


def masks(batch: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """B×1×H×W boxes of different sizes and places."""
    g = torch.Generator().manual_seed(seed)
    s = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        top, left = torch.randint(0, size // 2, (2,), generator=g).tolist()
        s[i, 0, top : top + 3 + i, left : left + 5] = 1
    return s


class MetricBatch(NamedTuple):
    """What the checks score: ``model``, inputs ``x``, classes ``y``, attributions ``a``, masks ``s``."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    s: torch.Tensor


def small_batch(
    batch_size: int = 3, seed: int = 0, model: nn.Module | None = None, classes: int = CLASSES
) -> MetricBatch:
    """(model, x, y, a, s) with ``a`` = gradient × input of the model (``tiny_cnn(seed)`` by default)."""
    model = model or tiny_cnn(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, SIZE, SIZE, generator=g)
    y = torch.arange(batch_size) % classes
    return MetricBatch(model, x, y, gradient_x_input(model, x, y), masks(batch_size, seed=seed))


def make_context(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, s: torch.Tensor | None, **caches: Any
) -> MetricContext:
    """The scoring context of one batch, explained again by gradient × input of ``model``."""
    return MetricContext(x=x, y=y, a=a, s=s, model=model, explainer=explainer(model), **caches)


# --- the checks ----------------------------------------------------------------------------------


def _same_scores(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num())


def _is_stochastic(metric: Metric) -> bool:
    return any(f.name == "seed" for f in dataclasses.fields(metric))


def check_metadata(metric: Metric) -> None:
    """Direction and category declared (``direction`` may be a property of the parameters), a frozen
    dataclass whose ``repr`` names the class, ``params()`` = its fields."""
    cls = type(metric)
    _expect(isinstance(getattr(cls, "name", None), str), f"{cls.__name__} declares no name")
    _expect(metric.direction in DIRECTIONS, f"{metric.name}: direction {metric.direction!r} not in {DIRECTIONS}")
    _expect(metric.category in CATEGORIES, f"{metric.name}: category {metric.category!r} not in {CATEGORIES}")
    params = getattr(cls, "__dataclass_params__", None)
    _expect(dataclasses.is_dataclass(cls) and params is not None and params.frozen, f"{metric.name}: not frozen")
    _expect(repr(metric).startswith(cls.__name__), f"{metric.name}: repr {metric!r}")
    fields = {f.name: getattr(metric, f.name) for f in dataclasses.fields(metric)}
    _expect(metric.params() == fields, f"{metric.name}: params() {metric.params()} are not its fields {fields}")


def check_scores_and_inputs(metric: Metric, parts: MetricBatch | None = None) -> None:
    """One float per sample (shape (B,), the inputs' dtype and device, no inf); inputs, model
    weights and mode, and the global RNG unchanged."""
    model, x, y, a, s = parts or small_batch()
    before = [t.clone() for t in (x, y, a, s)]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    scores = metric(make_context(model, x, y, a, s))
    _expect(
        scores.shape == (len(x),) and scores.dtype == x.dtype and scores.device == x.device,
        f"{metric.name}: scores {tuple(scores.shape)} {scores.dtype} on {scores.device}, "
        f"expected ({len(x)},) {x.dtype} on {x.device}",
    )
    _expect(all(torch.equal(t, b) for t, b in zip((x, y, a, s), before)), f"{metric.name} changed its inputs")
    _expect(all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()), f"{metric.name} changed the model")
    _expect(not model.training, f"{metric.name} left the model in training mode")
    _expect(torch.equal(torch.get_rng_state(), rng), f"{metric.name} used or reseeded the global RNG")
    _expect(not torch.isinf(scores).any(), f"{metric.name}: infinite scores {scores}")


def check_deterministic(metric: Metric, parts: MetricBatch | None = None) -> None:
    """The same scores (NaN where NaN) with fresh caches and with warm ones, for a seed."""
    model, x, y, a, s = parts or small_batch()
    cache: dict[Any, Any] = {}
    model_cache: dict[Any, Any] = {}
    first = metric(make_context(model, x, y, a, s, cache=cache, model_cache=model_cache))
    fresh = metric(make_context(model, x, y, a, s))
    warm = metric(make_context(model, x, y, a, s, cache=cache, model_cache=model_cache))
    _expect(_same_scores(first, fresh), f"{metric.name}: {first} first, {fresh} with fresh caches")
    _expect(_same_scores(first, warm), f"{metric.name}: {first} first, {warm} with warm caches")


def check_batch_independence(metric: Metric, parts: MetricBatch | None = None) -> None:
    """A sample's score does not depend on the rest of its batch (per-sample normalisation).

    Only for metrics without a ``seed``: seeded draws are per batch, so stochastic metrics
    cannot compare exactly; for them the check passes without scoring.
    """
    if _is_stochastic(metric):
        return
    model, x, y, a, s = parts or small_batch()
    together = metric(make_context(model, x, y, a, s))
    alone = metric(make_context(model, x[1:2], y[1:2], a[1:2], s[1:2]))
    try:
        torch.testing.assert_close(alone, together[1:2], equal_nan=True, rtol=1e-4, atol=1e-5)
    except AssertionError as error:
        raise AssertionError(f"{metric.name}: sample 1 alone {alone}, in its batch {together[1:2]}") from error


def check_empty_mask_gives_nan(metric: Metric, parts: MetricBatch | None = None) -> None:
    """A metric that needs a mask scores NaN for a sample with an empty one (others need nothing)."""
    if not metric.needs_mask:
        return
    model, x, y, a, s = parts or small_batch()
    s = s.clone()
    s[1] = 0
    scores = metric(make_context(model, x, y, a, s))
    _expect(bool(torch.isnan(scores[1])), f"{metric.name}: {scores[1]} for an empty mask, expected NaN")


def check_missing_requirements_are_named(metric: Metric, parts: MetricBatch | None = None) -> None:
    """Without the mask, model or explainer it declares to need, the metric raises ``ValueError``
    naming itself."""
    model, x, y, a, s = parts or small_batch()
    ctx = make_context(model, x, y, a, s)
    without = (
        ("s", metric.needs_mask, dataclasses.replace(ctx, s=None)),
        ("model", metric.needs_model, dataclasses.replace(ctx, model=None)),
        ("explainer", metric.needs_explainer, dataclasses.replace(ctx, explainer=None)),
    )
    for field, needed, missing in without:
        if not needed:
            continue
        try:
            metric(missing)
        except ValueError as error:
            _expect(re.search(metric.name, str(error)) is not None, f"{metric.name}: {error!r} does not name it")
        else:
            raise AssertionError(f"{metric.name} needs {field!r} but scored without it")


def check_device_agnostic(
    metric: Metric, parts: MetricBatch | None = None, device: str | torch.device = "cuda"
) -> None:
    """The same scores on ``device`` (a copy of the model and inputs there) as on the CPU, on ``device``."""
    model, x, y, a, s = parts or small_batch()
    on_cpu = metric(make_context(model, x, y, a, s))
    moved = copy.deepcopy(model).to(device)
    on_device = metric(make_context(moved, x.to(device), y.to(device), a.to(device), s.to(device)))
    _expect(on_device.device.type == torch.device(device).type, f"{metric.name}: scores on {on_device.device}")
    try:
        torch.testing.assert_close(on_device.cpu(), on_cpu, equal_nan=True, rtol=1e-3, atol=1e-4)
    except AssertionError as error:
        raise AssertionError(f"{metric.name}: {on_device} on {device}, {on_cpu} on the CPU") from error


def check_metric(metric: Metric, parts: MetricBatch | None = None, device: str | torch.device | None = None) -> None:
    """Every check on ``parts`` (``small_batch()`` by default); the device check on ``device``,
    or on CUDA when it is present."""
    parts = parts or small_batch()
    check_metadata(metric)
    check_scores_and_inputs(metric, parts)
    check_deterministic(metric, parts)
    check_batch_independence(metric, parts)
    check_empty_mask_gives_nan(metric, parts)
    check_missing_requirements_are_named(metric, parts)
    if device is None and torch.cuda.is_available():
        device = "cuda"
    if device is not None:
        check_device_agnostic(metric, parts, device)


class MetricConformance:
    """Subclass as ``Test<Name>`` and set ``metric_factory``; every ``test_`` method is one check.

    The device check runs when CUDA is present and passes without scoring otherwise (no pytest
    here to skip it).
    """

    metric_factory: ClassVar[Callable[[], Metric]]

    def _metric(self) -> Metric:
        return type(self).metric_factory()  # through the class: a function attribute is not bound

    def test_metadata(self) -> None:
        check_metadata(self._metric())

    def test_scores_and_inputs(self) -> None:
        check_scores_and_inputs(self._metric())

    def test_deterministic(self) -> None:
        check_deterministic(self._metric())

    def test_batch_independence(self) -> None:
        check_batch_independence(self._metric())

    def test_empty_mask_gives_nan(self) -> None:
        check_empty_mask_gives_nan(self._metric())

    def test_missing_requirements_are_named(self) -> None:
        check_missing_requirements_are_named(self._metric())

    def test_device_agnostic(self) -> None:
        if torch.cuda.is_available():
            check_device_agnostic(self._metric())
