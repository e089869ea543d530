"""A suite: the metrics of one objective, scored together with shared, cached work.

Work that does not depend on the explanation (the model's clean outputs per batch) is computed
once per batch and kept in a per-batch cache for the life of the suite, i.e. of the worker, so
every trial after the first reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xaisearch.metrics.base import Direction, Metric, MetricContext

Explainer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        self._caches: dict[int, dict] = {}

    @property
    def names(self) -> list[str]:
        return [entry.metric.name for entry in self.entries]

    def score(
        self,
        model: nn.Module,
        batches: Sequence[EvalBatch],
        explain: Explainer,
        on_batch: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample scores of every metric over all batches: ``{name: Tensor[N]}``.

        ``on_batch(index, scores_so_far)`` runs after each batch (progress, pruning reports).
        """
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        for index, batch in enumerate(batches):
            attribution = explain(batch.x, batch.y)
            ctx = MetricContext(
                x=batch.x, y=batch.y, a=attribution, s=batch.s, model=model, cache=self._caches.setdefault(index, {})
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
