"""Optuna samplers by name: what a study file's ``sampler.name`` may say.

A factory takes the worker's seed and the search space's grid (a callable, since only the grid
sampler needs it and building it needs the model) and returns the sampler. Optuna is imported
when a sampler is made, not when a study file is validated. Register your own with
``@SAMPLERS.register("cmaes")`` on a function of that signature.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xaisearch.registry import Registry

if TYPE_CHECKING:
    import optuna

GridOf = Callable[[], dict[str, list[Any]]]
SamplerFactory = Callable[[int, GridOf], "optuna.samplers.BaseSampler"]

SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
GRID_SAMPLER = "grid"  # the one whose parameters must all have grid values (``sampler.grid``)


@SAMPLERS.register("tpe")
def tpe(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """Multivariate, grouped TPE: the conditional rule space needs ``group``; 10 random start-up trials."""
    import optuna

    with warnings.catch_warnings():  # ``group`` is experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=10)


@SAMPLERS.register("random")
def random(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register(GRID_SAMPLER)
def exhaustive_grid(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GridSampler(grid(), seed=seed)


@SAMPLERS.register("nsga2")
def nsga2(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """NSGA-II, for multi-objective studies (a Pareto front)."""
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)
