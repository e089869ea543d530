"""The Optuna objective: sample a config, explain, score, record, return the weighted value."""

from __future__ import annotations

import math

import torch

from xaisearch.metrics.objective import weighted_objective
from xaisearch.metrics.suite import summary
from xaisearch.search.workbench import Workbench

CONFIG_ATTR = "config"


def mean_attr(metric: str) -> str:
    return f"{metric}.mean"


def sem_attr(metric: str) -> str:
    return f"{metric}.sem"


class Objective:
    """Callable for ``study.optimize``; holds the worker's workbench across trials."""

    def __init__(self, bench: Workbench) -> None:
        self.bench = bench

    def __call__(self, trial) -> float:
        config = self.bench.space.sample(trial)
        config.study = trial.study.study_name
        config.trial = trial.number
        trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json"))
        scores = self.bench.score(config)
        means: dict[str, float] = {}
        for name, values in scores.items():
            mean, sem = summary(values)
            means[name] = mean
            trial.set_user_attr(mean_attr(name), mean if math.isfinite(mean) else None)
            trial.set_user_attr(sem_attr(name), sem if math.isfinite(sem) else None)
            trial.set_user_attr(f"{name}.nan_fraction", float(torch.isnan(values).float().mean()))
        # a NaN objective makes Optuna fail the trial (e.g. an exploding rule): never a fake score
        return weighted_objective(means, self.bench.suite.entries)
