"""The study at a storage URL: created once from a spec, then joined by any number of workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import optuna

from xaisearch.errors import InputError
from xaisearch.search.space import SearchSpace
from xaisearch.search.study import (
    BUDGET_ATTR,
    SEED_NAME_ATTR,
    SEEDS_ATTR,
    SPEC_ATTR,
    SPEC_HASH_ATTR,
    WEIGHTS_DIR_ATTR,
    make_sampler,
    versions,
)
from xaisearch.service.storage import Heartbeat, mask_password, open_storage
from xaisearch.spec import StudySpec

JOURNAL_NAME = "optuna.journal"


def default_storage_url(run_dir: Path) -> str:
    return str(run_dir / JOURNAL_NAME)


def open_study(
    spec: StudySpec,
    storage_url: str,
    space: SearchSpace,
    budget: int | None = None,
    weights_dir: Path | None = None,
    directions: Sequence[Literal["minimize", "maximize"]] | None = None,
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
        study.set_user_attr(SPEC_HASH_ATTR, spec.content_hash())
        study.set_user_attr("versions", versions())
    if study.user_attrs.get(SPEC_ATTR) != spec.stored_form():  # new, or the same search validated anew
        study.set_user_attr(SPEC_ATTR, spec.stored_form())
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
    name: str,
    storage_url: str,
    heartbeat: Heartbeat | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    application_name: str = "xaisearch",
) -> optuna.Study:
    """The study ``name`` as it is stored; a storage that is not there is refused, never created."""
    storage = open_storage(storage_url, heartbeat, application_name, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise InputError(f"study {name!r} not found in {mask_password(storage_url)}; studies there: {known}") from None
