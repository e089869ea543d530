"""What a study holds: its sampler, and the user attributes every worker reads.

Everything a worker needs lives in the study's user attributes: the validated spec and its hash,
the trial budget (study-wide), where the model weights are, and whether the seed composites were
enqueued. Workers are therefore stateless: ``service.studies.load_existing_study`` +
``study_spec`` is all they read. Opening a study at a storage URL is the service layer's job.
"""

from __future__ import annotations

import zlib
from importlib import metadata

import optuna

from xaisearch.errors import InputError
from xaisearch.search.space import SearchSpace
from xaisearch.spec import SAMPLERS, StudySpec

SPEC_ATTR = "spec"
SPEC_HASH_ATTR = "spec_hash"
BUDGET_ATTR = "n_trials"
WEIGHTS_DIR_ATTR = "weights_dir"
SEEDS_ATTR = "seeds_enqueued"
SEED_NAME_ATTR = "seed_composite"
BUDGET_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def make_sampler(spec: StudySpec, space: SearchSpace, worker: str = "") -> optuna.samplers.BaseSampler:
    """The spec's sampler; each worker gets its own seed so parallel workers do not propose the same point."""
    seed = spec.seed if not worker else (spec.seed * 1_000_003 + zlib.crc32(worker.encode())) % 2**31
    return SAMPLERS.get(spec.sampler.name)(seed, space.grid)


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
    states = [t.state for t in study.get_trials(deepcopy=False)]
    done = sum(state in BUDGET_STATES for state in states)
    running = states.count(optuna.trial.TrialState.RUNNING)
    failed = states.count(optuna.trial.TrialState.FAIL)
    if failed >= max(budget, 10):
        raise RuntimeError(
            f"{failed} trials of study {study.study_name!r} failed; stopping instead of retrying forever"
        )
    return budget - done - running


def completed_count(study: optuna.Study) -> int:
    return len(completed_trials(study))


def completed_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=BUDGET_STATES)
