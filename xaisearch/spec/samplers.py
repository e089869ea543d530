"""Optuna samplers by name: what a study file's ``sampler.name`` may say.

A factory takes the worker's seed and the search space's grid (a callable, since only the grid
sampler needs it and building it needs the model) and returns the sampler. Optuna is imported
when a sampler is made, not when a study file is validated. Register your own with
``@SAMPLERS.register("name")`` on a function of that signature.

The rule space is conditional: a rule's parameter (``low.gamma``) exists only in trials whose
group chose that rule. Samplers that model one fixed search space (GP, CMA-ES, QMC) sample such
parameters independently, which Optuna announces in a log line on every trial; the factories
turn off exactly that announcement (``warn_independent_sampling=False``), since it is how this
space is, not a mistake of the study file, and leave every other warning alone. Every name here
serves single- and multi-objective studies except those in ``SINGLE_OBJECTIVE_ONLY``.
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
# samplers that walk one sequence through the study (the grid's shuffled order, a Sobol' sequence):
# they are seeded once from the study's seed, never per trial (``search.study.make_sampler``)
SEQUENCE_SAMPLERS = frozenset({GRID_SAMPLER, "qmc"})
SINGLE_OBJECTIVE_ONLY = frozenset({"cmaes"})  # Optuna's CMA-ES refuses multi-objective studies


@SAMPLERS.register("tpe")
def tpe(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """Multivariate, grouped TPE: the conditional rule space needs ``group``; 10 random start-up trials.

    The same sampler serves multi-objective studies (Optuna's TPE splits good from bad trials by
    non-domination rank there, MOTPE); ``multivariate`` and ``group`` work with it unchanged.
    """
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
    """Every point of ``sampler.grid`` once, in one shuffled order; then the study stops.

    ``GridSampler`` numbers the points by a permutation drawn from its seed and gives trial ``n``
    point ``n``, so every trial and worker of a study must use the same seed (``SEQUENCE_SAMPLERS``):
    with a seed per trial each trial would number the points afresh, repeating some and skipping
    others (over a third of a 2,401-point grid).
    """
    import optuna

    return optuna.samplers.GridSampler(grid(), seed=seed)


@SAMPLERS.register("nsga2")
def nsga2(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """NSGA-II, for multi-objective studies (a Pareto front)."""
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed)


@SAMPLERS.register("gp")
def gaussian_process(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """Gaussian-process Bayesian optimisation (log expected improvement; for several objectives,
    expected hypervolume improvement). Best for a few hundred trials over numeric parameters; the
    parameters that exist only under some rule are sampled at random (seeded). Without the
    ``greenlet`` package Optuna logs once that it optimises the acquisition sequentially."""
    import optuna

    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


@SAMPLERS.register("cmaes")
def cmaes(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """CMA-ES (as in EVO-LRP, arXiv 2509.23585), single-objective only; needs the ``cmaes`` package.

    CMA-ES evolves the numeric parameters present in every trial so far. It cannot sample
    categoricals (the rules, grid values) nor parameters that exist only under some rule: those
    go to a seeded univariate TPE, which still learns from the history, instead of Optuna's
    default random fallback. Each such hand-over would log a warning per trial; the factory
    turns off that one (``warn_independent_sampling``). A space with no numeric parameter
    present in every trial (a grid of categoricals) leaves CMA-ES nothing to do: encode the
    grid as integer indices instead.
    """
    import optuna

    fallback = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=fallback, warn_independent_sampling=False)


@SAMPLERS.register("qmc")
def quasi_monte_carlo(seed: int, grid: GridOf) -> optuna.samplers.BaseSampler:
    """Scrambled Sobol' points (seeded): an even cover of the space, a baseline to beat.

    The sequence is the one of the first trial's search space; parameters outside it (under other
    rules) are sampled at random (seeded). Optuna keeps the sequence's position in the study per
    seed, so every trial gets the study's seed (``SEQUENCE_SAMPLERS``) and the points form one sequence.
    """
    import optuna

    with warnings.catch_warnings():  # QMCSampler is experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)
