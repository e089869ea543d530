"""Storages, samplers and the study itself: create or resume, store the spec, enqueue seeds."""

from __future__ import annotations

import json
import re
import warnings
from importlib import metadata
from pathlib import Path

import optuna

from xaisearch.errors import InputError
from xaisearch.search.space import SearchSpace
from xaisearch.spec import StudySpec

SPEC_ATTR = "spec"
SPEC_HASH_ATTR = "spec_hash"
SEEDS_ATTR = "seeds_enqueued"
SEED_NAME_ATTR = "seed_composite"
JOURNAL_NAME = "optuna.journal"
_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


def mask_password(url: str) -> str:
    """``postgresql+psycopg2://user:secret@host/db`` → ``postgresql+psycopg2://user:***@host/db``."""
    return _PASSWORD.sub(r"\1***\3", url)


def default_storage_url(run_dir: Path) -> str:
    return str(run_dir / JOURNAL_NAME)


def open_storage(url: str):
    """An Optuna storage for ``url``: a journal file path (default), ``sqlite:///`` or PostgreSQL."""
    if "://" not in url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    if scheme.startswith("postgresql"):
        engine = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True}
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as error:  # driver or connection problems: one line, password masked
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"storage {mask_password(url)}: {mask_password(reason)}") from None
    raise InputError(
        f"storage {mask_password(url)}: unsupported URL; use a journal file path, sqlite:/// or postgresql+psycopg2://"
    )


def make_sampler(spec: StudySpec, space: SearchSpace) -> optuna.samplers.BaseSampler:
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler.name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=spec.seed)
    with warnings.catch_warnings():  # ``group`` is experimental; the conditional rule space needs it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=spec.seed, multivariate=True, group=True, n_startup_trials=10)


def versions() -> dict[str, str]:
    found = {}
    for package in ("xaisearch", "torch", "torchvision", "zennit", "optuna"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def open_study(spec: StudySpec, storage_url: str, space: SearchSpace) -> tuple[optuna.Study, list[str]]:
    """Create the study or resume it; enqueue the seed composites the first time only.

    Returns the study and one line per seed that the search space cannot express. A study of
    the same name made from a different spec is refused rather than silently mixed.
    """
    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec, space),
        direction="maximize",
        load_if_exists=True,
    )
    stored_hash = study.user_attrs.get(SPEC_HASH_ATTR)
    if stored_hash is not None and stored_hash != spec.content_hash():
        raise InputError(
            f"study {spec.name!r} in {mask_password(storage_url)} was made from a different study file; "
            "give this study a new name or use another --out/--storage"
        )
    skipped: list[str] = []
    if stored_hash is None:
        study.set_user_attr(SPEC_ATTR, json.loads(spec.model_dump_json()))
        study.set_user_attr(SPEC_HASH_ATTR, spec.content_hash())
        study.set_user_attr("versions", versions())
    if not study.user_attrs.get(SEEDS_ATTR):
        for seed in spec.seeds:
            params, reason = space.seed_params(seed)
            if params is None:
                skipped.append(f"seed {seed} skipped: {reason}")
                continue
            study.enqueue_trial(params, user_attrs={SEED_NAME_ATTR: seed}, skip_if_exists=True)
        study.set_user_attr(SEEDS_ATTR, True)
    return study, skipped


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def load_existing_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise InputError(f"study {name!r} not found in {mask_password(storage_url)}; studies there: {known}") from None
