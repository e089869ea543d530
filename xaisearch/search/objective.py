"""The Optuna objective: sample a config, explain, score, record, return the value(s).

Scalar form: the weighted objective of ``search.normalisation`` (maximised), reported per
evaluation batch so a pruner (Wilcoxon) can stop a hopeless trial early. Multi-objective form:
one mean per metric, with directions from the metrics (no pruning: Optuna has none for it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from xaisearch.metrics.suite import summary
from xaisearch.search.trial_attributes import (
    CONFIG_ATTR,
    PRUNED_AFTER_ATTR,
    WORKER_ATTR,
    mean_attr,
    nan_fraction_attr,
    sem_attr,
)
from xaisearch.search.workbench import Workbench

if TYPE_CHECKING:
    import optuna

HeatmapSink = Callable[[Any, torch.Tensor, torch.Tensor], object]


class Objective:
    """Callable for ``study.optimize``; holds the worker's workbench across trials."""

    def __init__(
        self,
        bench: Workbench,
        on_batch: Callable[[int, int], None] | None = None,
        worker: str = "",
        upload_heatmaps: HeatmapSink | None = None,
    ) -> None:
        self.bench = bench
        self.on_batch = on_batch  # (batches done, batches total): progress of one trial's evaluation
        self.worker = worker
        self.upload_heatmaps = upload_heatmaps  # (trial, images, attributions): runs while the trial is RUNNING

    @property
    def multi_objective(self) -> bool:
        return self.bench.spec.objective.type == "multi"

    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        if self.worker:
            trial.set_user_attr(WORKER_ATTR, self.worker)
        config = self.bench.space.sample(trial)
        config.study = trial.study.study_name
        config.trial = trial.number
        trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        explain = self.bench.explainer(config)
        scores = self.bench.suite.score(self.bench.model, self.bench.batches, explain, self._reporter(trial))
        means: dict[str, float] = {}
        for name, values in scores.items():
            mean, sem = summary(values)
            means[name] = mean
            trial.set_user_attr(mean_attr(name), mean if math.isfinite(mean) else None)
            trial.set_user_attr(sem_attr(name), sem if math.isfinite(sem) else None)
            trial.set_user_attr(nan_fraction_attr(name), float(torch.isnan(values).float().mean()))
        if self.upload_heatmaps is not None and self.bench.spec.n_heatmaps > 0:
            batch = self.bench.batches[0]
            count = self.bench.spec.n_heatmaps
            self.upload_heatmaps(trial, batch.x[:count], explain(batch.x[:count], batch.y[:count]))
        if self.multi_objective:
            return tuple(means[name] for name in self.bench.objective_metrics())
        # a NaN objective makes Optuna fail the trial (e.g. an exploding rule): never a fake score
        return self.bench.objective_value(means)

    def _reporter(self, trial: optuna.trial.Trial) -> Callable[[int, dict[str, torch.Tensor]], None]:
        total = len(self.bench.batches)
        prune = self.bench.spec.objective.pruner != "none" and not self.multi_objective

        def report(index: int, scores: dict[str, torch.Tensor]) -> None:
            if self.on_batch is not None:
                self.on_batch(index + 1, total)
            if not prune:
                return
            size = len(self.bench.batches[index].x)
            batch_means = {name: summary(values[-size:])[0] for name, values in scores.items()}
            value = self.bench.objective_value(batch_means)
            if math.isfinite(value):
                trial.report(value, step=index)  # step = the fixed evaluation batch (Wilcoxon pairs by it)
            if index + 1 < total and trial.should_prune():
                import optuna

                running = {name: summary(values)[0] for name, values in scores.items()}
                trial.set_user_attr(PRUNED_AFTER_ATTR, index + 1)
                raise optuna.TrialPruned(
                    f"pruned after {index + 1} batches at {self.bench.objective_value(running):.4f}"
                )

        return report
