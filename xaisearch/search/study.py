"""What a study holds: its sampler, and the user attributes every worker reads.

Everything a worker needs lives in the study's user attributes: the validated spec and its hash,
the trial budget (study-wide), where the model weights are, and whether the seed composites were
enqueued. Workers are therefore stateless: ``service.studies.load_existing_study`` +
``study_spec`` is all they read. Opening a study at a storage URL is the service layer's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from xaisearch.errors import InputError
from xaisearch.search.space import SearchSpace
from xaisearch.search.trial_attributes import failure_summary
from xaisearch.spec import SAMPLERS, StudySpec
from xaisearch.spec.samplers import SEQUENCE_SAMPLERS, GridOf, SamplerFactory

SPEC_ATTR = "spec"
SPEC_HASH_ATTR = "spec_hash"
BUDGET_ATTR = "n_trials"
WEIGHTS_DIR_ATTR = "weights_dir"
SEEDS_ATTR = "seeds_enqueued"
SEED_NAME_ATTR = "seed_composite"
BUDGET_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """The spec's sampler, made afresh for each trial with a seed drawn from the study's seed and
    the trial's number.

    One seed for the whole process would make two runs of the same study at once propose the
    same points; a seed per process (pid) would make a run irreproducible. Trial numbers are
    unique in a study, so concurrent workers and runs draw differently, and one run is still
    reproducible from ``spec.seed``. The samplers keep no state between trials but their random
    generator (the history is in the storage), so a fresh one per trial loses nothing.
    """

    def __init__(self, factory: SamplerFactory, seed: int, grid: GridOf) -> None:
        self._factory, self._seed, self._grid = factory, seed, grid
        self._inner = factory(seed, grid)

    def seed_for(self, number: int) -> int:
        return (self._seed * 1_000_003 + number) % 2**31

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._inner = self._factory(self.seed_for(trial.number), self._grid)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        param_name: str,
        distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def make_sampler(spec: StudySpec, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The spec's sampler (``spec.samplers.SAMPLERS``), seeded per trial (``TrialSeededSampler``), or
    once from the study's seed for samplers that walk one sequence through the study."""
    factory = SAMPLERS.get(spec.sampler.name)
    if spec.sampler.name in SEQUENCE_SAMPLERS:
        return factory(spec.seed, space.grid)
    return TrialSeededSampler(factory, spec.seed, space.grid)


def versions() -> dict[str, str]:
    found = {}
    for package in ("xaisearch", "torch", "torchvision", "zennit", "optuna"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def study_spec(study: optuna.Study) -> StudySpec:
    """The spec a study was created from (stored by ``open_study``)."""
    if SPEC_ATTR not in study.user_attrs:
        raise InputError(
            f"study {study.study_name!r} was not created by xaisearch (no stored spec); use 'xaisearch create'"
        )
    from pydantic import ValidationError

    try:
        return StudySpec.model_validate(study.user_attrs[SPEC_ATTR])
    except ValidationError as error:  # made by another xaisearch version: no worker can run it, none restarts
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InputError(
            f"study {study.study_name!r}: its stored spec does not validate here ({field}: {first['msg']}); "
            "run workers with the xaisearch version that created it, or create the study again"
        ) from None


def study_budget(study: optuna.Study) -> int:
    return int(study.user_attrs.get(BUDGET_ATTR) or study_spec(study).n_trials)


def trials_to_start(study: optuna.Study, budget: int) -> int:
    """How many more trials may start: the budget minus completed and running ones.

    Failed trials do not use budget (their retries do); waiting (enqueued) trials are started
    like any other. With several workers the check races only inside one ``ask``.
    """
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    done = sum(state in BUDGET_STATES for state in states)
    running = states.count(optuna.trial.TrialState.RUNNING)
    failed = states.count(optuna.trial.TrialState.FAIL)
    if failed >= max(budget, 10):  # most likely the same cause each time: say it once, in one line
        raise InputError(f"study {study.study_name!r}: {failure_summary(trials)}; stopping instead of retrying forever")
    return budget - done - running


def completed_count(study: optuna.Study) -> int:
    return len(completed_trials(study))


def completed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=BUDGET_STATES)
