"""The study in the storage: created once from a spec, then joined by any number of workers.

Everything a worker needs lives in the study's user attributes: the validated spec and its hash,
the trial budget (study-wide), where the model weights are, and whether the seed composites were
enqueued. Workers are therefore stateless: ``load_study`` + ``study_spec`` is all they read.
"""

from __future__ import annotations

import warnings
import zlib
from importlib import metadata
from pathlib import Path

import optuna

from xaisearch.errors import InputError
from xaisearch.search.space import SearchSpace
from xaisearch.search.storage import Heartbeat, mask_password, open_storage
from xaisearch.spec import StudySpec

SPEC_ATTR = "spec"
SPEC_HASH_ATTR = "spec_hash"
BUDGET_ATTR = "n_trials"
WEIGHTS_DIR_ATTR = "weights_dir"
SEEDS_ATTR = "seeds_enqueued"
SEED_NAME_ATTR = "seed_composite"
JOURNAL_NAME = "optuna.journal"
BUDGET_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def default_storage_url(run_dir: Path) -> str:
    return str(run_dir / JOURNAL_NAME)


def make_sampler(spec: StudySpec, space: SearchSpace, worker: str = "") -> optuna.samplers.BaseSampler:
    """The spec's sampler; each worker gets its own seed so parallel workers do not propose the same point."""
    seed = spec.seed if not worker else (spec.seed * 1_000_003 + zlib.crc32(worker.encode())) % 2**31
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if spec.sampler.name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    with warnings.catch_warnings():  # ``group`` is experimental; the conditional rule space needs it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=10)


def versions() -> dict[str, str]:
    found = {}
    for package in ("xaisearch", "torch", "torchvision", "zennit", "optuna"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def open_study(
    spec: StudySpec,
    storage_url: str,
    space: SearchSpace,
    budget: int | None = None,
    weights_dir: Path | None = None,
    directions: list[str] | None = None,
) -> tuple[optuna.Study, list[str]]:
    """Create the study or resume it (idempotent); enqueue the seed composites the first time only.

    Returns the study and one line per seed that the search space cannot express. A study of the
    same name made from a different spec is refused rather than silently mixed. ``budget``
    (default: the spec's ``n_trials``) is the study-wide number of completed trials to reach.
    """
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec, space),
        directions=directions or ["maximize"],
        load_if_exists=True,
    )
    stored_hash = study.user_attrs.get(SPEC_HASH_ATTR)
    if stored_hash is not None and stored_hash != spec.content_hash():
        raise InputError(
            f"study {spec.name!r} in {mask_password(storage_url)} was made from a different study file; "
            "give this study a new name or use another --out/--storage"
        )
    if stored_hash is None:
        study.set_user_attr(SPEC_ATTR, spec.stored_form())
        study.set_user_attr(SPEC_HASH_ATTR, spec.content_hash())
        study.set_user_attr("versions", versions())
    wanted_budget = budget or spec.n_trials
    if study.user_attrs.get(BUDGET_ATTR) != wanted_budget:
        study.set_user_attr(BUDGET_ATTR, wanted_budget)
    if weights_dir is not None and WEIGHTS_DIR_ATTR not in study.user_attrs:
        study.set_user_attr(WEIGHTS_DIR_ATTR, str(weights_dir.resolve()))
    skipped: list[str] = []
    if not study.user_attrs.get(SEEDS_ATTR):
        for seed in spec.seeds:
            params, reason = space.seed_params(seed)
            if params is None:
                skipped.append(f"seed {seed} skipped: {reason}")
                continue
            study.enqueue_trial(params, user_attrs={SEED_NAME_ATTR: seed}, skip_if_exists=True)
        study.set_user_attr(SEEDS_ATTR, True)
    return study, skipped


def load_existing_study(
    name: str, storage_url: str, heartbeat: Heartbeat | None = None, sampler=None, application_name: str = "xaisearch"
) -> optuna.Study:
    storage = open_storage(storage_url, heartbeat, application_name)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise InputError(f"study {name!r} not found in {mask_password(storage_url)}; studies there: {known}") from None


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
