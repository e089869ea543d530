"""A suite: the metrics of one objective, scored together with shared, cached work.

Three lifetimes of shared work (see ``MetricContext``):

* per batch, for the life of the suite (= the worker), reused by every trial: work that does
  not depend on the explanation — clean model outputs, random subsets and their outputs,
  noise draws and noisy inputs, random other classes (``ctx.cache``, one dict per batch index);
* per model, across batches: randomised weights (``ctx.model_cache``);
* per scoring call (one trial, one batch): explanation-dependent work several metrics share —
  one sort of the pooled map for all rank-based metrics, one set of noisy explanations for Avg-
  and MaxSensitivity (``ctx.scratch``).

Pinned suites (``suite_entries``): ``paper`` reproduces the settings of Pahde et al. (CVPRW
2023, reference/paper-and-data.md §3.1); ``fast`` is the cheap default of searches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from xaisearch.metrics.base import Explainer, Metric, MetricContext, make_explainer
from xaisearch.metrics.catalog import Direction
from xaisearch.metrics.execution import explain_in_chunks


@dataclass(frozen=True)
class WeightedMetric:
    metric: Metric
    weight: float = 1.0
    direction: Direction | None = None  # None: the metric's own

    @property
    def effective_direction(self) -> Direction:
        return self.direction or self.metric.direction


@dataclass
class EvalBatch:
    x: torch.Tensor
    y: torch.Tensor
    s: torch.Tensor | None = None


class MetricSuite:
    def __init__(self, entries: Sequence[WeightedMetric]) -> None:
        names = [entry.metric.name for entry in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"a suite holds each metric once, got {names}")
        self.entries = list(entries)
        self._caches: dict[int, dict[Any, Any]] = {}
        self._model_cache: dict[Any, Any] = {}

    @property
    def names(self) -> list[str]:
        return [entry.metric.name for entry in self.entries]

    def score(
        self,
        model: nn.Module,
        batches: Sequence[EvalBatch],
        explain: Explainer | Any,
        on_batch: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
        attributions: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample scores of every metric over all batches: ``{name: Tensor[N]}``.

        ``explain`` is a callable ``(x, y) -> a`` (a ``ModelExplainer`` for randomisation
        metrics) or a composite config; it produces the scored maps and is handed to the
        metrics that explain again. ``on_batch(index, scores_so_far)`` runs after each batch
        (progress, pruning reports). The per-batch caches assume the same batches (same order)
        on every call, as a worker's evaluation set. ``attributions`` (one map per batch, made by
        ``explain``) skips the scored explanation: several suites (perturbed metric settings)
        then score the same maps.
        """
        explainer = make_explainer(explain, model)
        if explainer is None:
            raise ValueError("MetricSuite.score needs an explainer: a callable (x, y) -> a or a composite config")
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        if attributions is not None and len(attributions) != len(batches):
            raise ValueError(f"{len(attributions)} attribution maps given for {len(batches)} batches")
        for index, batch in enumerate(batches):
            if attributions is None:
                attribution = explain_in_chunks(explainer, model, batch.x, batch.y)
            else:
                attribution = attributions[index]
            ctx = MetricContext(
                x=batch.x,
                y=batch.y,
                a=attribution,
                s=batch.s,
                model=model,
                cache=self._caches.setdefault(index, {}),
                explainer=explainer,
                model_cache=self._model_cache,
            )
            with torch.no_grad():
                for entry in self.entries:
                    collected[entry.metric.name].append(entry.metric(ctx).detach())
            if on_batch is not None:
                on_batch(index, {name: torch.cat(values) for name, values in collected.items()})
        return {name: torch.cat(values) for name, values in collected.items()}


def summary(scores: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the finite scores (NaN when none is finite)."""
    finite = scores[torch.isfinite(scores)].double()
    if finite.numel() == 0:
        return float("nan"), float("nan")
    sem = finite.std(unbiased=True) / finite.numel() ** 0.5 if finite.numel() > 1 else torch.tensor(0.0)
    return float(finite.mean()), float(sem)


def _paper(image_size: int) -> list[tuple[str, dict[str, Any]]]:
    """Pahde et al.'s suite (paper-and-data.md §3.1), pixel counts scaled from 224² to the image.

    "mean" baseline of the paper = the dataset mean pixel = ``zero`` after normalisation;
    PixelFlipping: 448 pixels a step at 224² = 112 steps of 1/112 of the image; region
    perturbation: 14-px patches (1/16 of the side), 50 regions, blur; faithfulness correlation:
    subsets of 1 % of the pixels, 100 runs, logits; sensitivities: 10 noisy copies, radius 0.2,
    shared; RRA/RMA/Sparseness/Complexity on |channel sum|; RandomLogit with the flattened SSIM
    of their code.
    """
    pixels = image_size * image_size
    sensitivity = {"samples": 10, "radius": 0.2, "denominator": "input", "normalise": "second_moment"}
    return [
        ("pixel_flipping", {"steps": min(112, pixels), "order": "morf", "baseline": "zero", "softmax": True}),
        (
            "region_perturbation",
            {"patch_size": max(1, round(14 * image_size / 224)), "regions": 50, "baseline": "blur", "order": "morf"},
        ),
        ("faithfulness_correlation", {"subset_size": max(1, int(0.01 * pixels)), "runs": 100, "baseline": "zero"}),
        ("avg_sensitivity", sensitivity),
        ("max_sensitivity", sensitivity),
        ("relevance_rank_accuracy", {"pooling": "sum_abs"}),
        ("relevance_mass_accuracy", {"pooling": "sum_abs"}),
        ("sparseness", {"pooling": "sum_abs"}),
        ("complexity", {"pooling": "sum_abs"}),
        ("random_logit", {"ssim": "flat1d"}),
    ]


def _fast(image_size: int) -> list[tuple[str, dict[str, Any]]]:
    """Cheap: no extra explanation, 10 forwards per sample."""
    return [
        ("relevance_mass_accuracy", {}),
        ("relevance_rank_accuracy", {}),
        ("pixel_flipping", {"steps": 10}),
        ("sparseness", {}),
    ]


SUITES: dict[str, Callable[[int], list[tuple[str, dict[str, Any]]]]] = {"paper": _paper, "fast": _fast}


def suite_entries(name: str, image_size: int = 224, memory_budget: int | None = None) -> list[WeightedMetric]:
    """The pinned suite ``name`` (``paper`` or ``fast``) as weighted metrics (weight 1 each).

    ``memory_budget`` (bytes of perturbed inputs per forward) overrides the perturbation
    metrics' default: large chunks suit a GPU; on a CPU a few megabytes are faster (measured
    1.7× on the mini VGG: big batches leave the caches). A metric of the suite that is not
    registered raises, naming it: nothing is skipped silently.
    """
    from xaisearch.metrics.registry import METRICS, make_metric

    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {sorted(SUITES)}")
    specs = SUITES[name](image_size)
    missing = [metric for metric, _ in specs if metric not in METRICS]
    if missing:
        raise ValueError(f"suite {name!r} needs metrics that are not registered: {missing}")
    entries = []
    for metric, params in specs:
        if memory_budget is not None and "memory_budget" in {f.name for f in fields(METRICS.get(metric))}:
            params = {**params, "memory_budget": memory_budget}
        entries.append(WeightedMetric(make_metric(metric, **params)))
    return entries
