"""The Optuna objective: sample a config, explain, score, record, return the value(s).

Scalar form: the weighted objective of ``search.normalisation`` (maximised), reported per
evaluation batch so a pruner (Wilcoxon) can stop a hopeless trial early. Multi-objective form:
one mean per metric, with directions from the metrics (no pruning: Optuna has none for it).

A trial never reports a made-up score: when its objective is NaN, or every attribution map it
scored is NaN (a metric may still rank such a map), it raises ``TrialFailed`` with one line
saying which metric and why, stored in the trial's ``fail_reason`` user attribute; any other
exception is recorded there too. ``failure_summary`` reads them back for the user.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xaisearch.metrics.base import ModelExplainer
from xaisearch.metrics.suite import summary
from xaisearch.search.trial_attributes import (
    CONFIG_ATTR,
    FAIL_REASON_ATTR,
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


class TrialFailed(RuntimeError):
    """A trial with no meaningful score; the message says which metric and why.

    A ``RuntimeError``, so the worker's ``study.optimize(catch=...)`` marks the trial FAIL and goes
    on with the next one (another configuration may explain the model fine).
    """


@dataclass
class AttributionCheck:
    """Counts the attribution maps of the workbench's model a trial produced, by what is wrong with them."""

    maps: int = 0
    all_nan: int = 0  # every value NaN or infinite
    some_nan: int = 0  # some values NaN or infinite
    all_zero: int = 0

    def record(self, attribution: torch.Tensor) -> None:
        values = attribution.detach().flatten(1)
        finite = torch.isfinite(values)
        self.maps += len(values)
        self.all_nan += int((~finite).all(dim=1).sum())
        self.some_nan += int(((~finite).any(dim=1) & finite.any(dim=1)).sum())
        self.all_zero += int((values == 0).all(dim=1).sum())

    def watch(self, explain: ModelExplainer) -> ModelExplainer:
        """``explain``, recording the maps it makes of its own model (not of randomised copies)."""

        def method(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            attribution = explain.method(model, x, y)
            if model is explain.model:
                self.record(attribution)
            return attribution

        return ModelExplainer(explain.model, method)

    def problem(self) -> str | None:
        """What is wrong with every map, or with some: ``all attributions NaN``, or ``None``."""
        if self.maps == 0:
            return None
        if self.all_nan == self.maps:
            return "all attributions NaN"
        if self.all_zero == self.maps:
            return "all attributions zero"
        if self.all_nan + self.some_nan:
            return f"{self.all_nan + self.some_nan} of {self.maps} attribution maps contain NaN"
        return None


def failure_reason(nan_metrics: Sequence[str], check: AttributionCheck) -> str:
    """One line: which metrics have no finite score, what the attributions show, what to check."""
    problem = check.problem()
    names = ", ".join(repr(name) for name in nan_metrics)
    if len(nan_metrics) == 1:
        what = f"metric {names} is NaN for every sample"
    elif nan_metrics:
        what = f"metrics {names} are NaN for every sample"
    elif problem == "all attributions NaN":
        what = "every attribution map is NaN, so no metric score of this trial means anything"
        problem = None
    else:
        what = "the objective is not finite"
    detail = f" ({problem})" if problem else ""
    if check.maps and check.all_nan + check.some_nan:
        fix = "check the model and the canonizer, and the rules' parameters (a rule can overflow)"
    elif check.maps and check.all_zero == check.maps:
        fix = "the rules lose all relevance; check the rules and the canonizer"
    else:
        fix = "check the metrics' parameters and the evaluation masks"
    return f"{what}{detail}: {fix}"


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
        import optuna

        try:
            return self._evaluate(trial)
        except (optuna.TrialPruned, TrialFailed):
            raise
        except Exception as error:  # recorded, so the user learns why trials fail (``failure_summary``)
            first_line = (str(error).splitlines() or [""])[0]
            trial.set_user_attr(FAIL_REASON_ATTR, f"{type(error).__name__}: {first_line}".removesuffix(": "))
            raise

    def _evaluate(self, trial: optuna.trial.Trial) -> float | tuple[float, ...]:
        if self.worker:
            trial.set_user_attr(WORKER_ATTR, self.worker)
        config = self.bench.space.sample(trial)
        config.study = trial.study.study_name
        config.trial = trial.number
        trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        check = AttributionCheck()
        # the config's own method (LRP or a baseline), for the scored maps and every re-explanation
        explain = check.watch(self.bench.explainer(config))
        scores = self.bench.suite.score(self.bench.model, self.bench.batches, explain, self._reporter(trial))
        means: dict[str, float] = {}
        for name, values in scores.items():
            mean, sem = summary(values)
            means[name] = mean
            trial.set_user_attr(mean_attr(name), mean if math.isfinite(mean) else None)
            trial.set_user_attr(sem_attr(name), sem if math.isfinite(sem) else None)
            trial.set_user_attr(nan_fraction_attr(name), float(torch.isnan(values).float().mean()))
        if self.multi_objective:
            objective = tuple(means[name] for name in self.bench.objective_metrics())
        else:
            objective = (self.bench.objective_value(means),)
        # never a fake score: a NaN objective (an exploding rule), or a score of all-NaN maps
        if not all(math.isfinite(v) for v in objective) or (check.maps and check.all_nan == check.maps):
            counted = self.bench.objective_metrics() if self.multi_objective else list(means)
            nan_metrics = [name for name in counted if not math.isfinite(means[name])]
            reason = failure_reason(nan_metrics, check)
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            raise TrialFailed(reason)
        if self.upload_heatmaps is not None and self.bench.spec.n_heatmaps > 0:
            batch = self.bench.batches[0]
            count = self.bench.spec.n_heatmaps
            self.upload_heatmaps(trial, batch.x[:count], explain(batch.x[:count], batch.y[:count]))
        return objective if self.multi_objective else objective[0]

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
