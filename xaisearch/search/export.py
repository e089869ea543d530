"""Export a finished trial as a composite config that zennit users load in one call."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig
from xaisearch.explain.evidence import ValidationEvidence
from xaisearch.search.study import SEED_NAME_ATTR, WEIGHTS_DIR_ATTR, study_spec
from xaisearch.search.trial_attributes import CONFIG_ATTR, mean_attr, metric_means

if TYPE_CHECKING:
    from xaisearch.metrics.suite import WeightedMetric


def config_of(trial: optuna.trial.FrozenTrial, study: optuna.Study) -> ExplainerConfig:
    """The trial's config with its scores, study and trial number filled in."""
    if CONFIG_ATTR not in trial.user_attrs:
        raise InputError(f"trial {trial.number} of study {study.study_name!r} has no stored config")
    config = ExplainerConfig.model_validate(trial.user_attrs[CONFIG_ATTR])
    config.scores = metric_means(trial.user_attrs)
    if trial.values is not None and len(trial.values) == 1:
        config.scores["objective"] = trial.values[0]
    config.study, config.trial = study.study_name, trial.number
    config.versions = dict(study.user_attrs.get("versions", {}))
    return config


def search_objective(trial: optuna.trial.FrozenTrial, entries: Sequence[WeightedMetric]) -> float:
    """The trial's single objective on the search set, or (multi-objective) the weighted objective
    of its metric means with the study file's weights; ``-inf`` when that is undefined."""
    if trial.values is not None and len(trial.values) == 1:
        return float(trial.values[0])
    from xaisearch.search.normalisation import weighted_objective

    means = {e.metric.name: trial.user_attrs.get(mean_attr(e.metric.name)) for e in entries}
    value = weighted_objective({k: float("nan") if v is None else v for k, v in means.items()}, entries)
    return value if math.isfinite(value) else float("-inf")


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial on the search set; for a multi-objective study, the Pareto-optimal trial
    with the best weighted objective of the study file's metric weights."""
    if len(study.directions) == 1:
        return study.best_trial
    from xaisearch.search.workbench import build_suite

    entries = build_suite(study_spec(study)).entries
    return max(study.best_trials, key=lambda trial: search_objective(trial, entries))


def best_seed_name(study: optuna.Study) -> str | None:
    """The seed composite with the best search-set objective (``None``: no seed completed)."""
    seeds = seed_trials(study)
    return max(seeds, key=lambda name: seeds[name].values[0]) if seeds else None


def pick_trial(study: optuna.Study, number: int | None = None) -> optuna.trial.FrozenTrial:
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise InputError(f"study {study.study_name!r} has no completed trial yet; run or join it first")
    if number is None:
        return best_trial(study)
    for trial in completed:
        if trial.number == number:
            return trial
    raise InputError(f"--trial {number}: no completed trial with that number in study {study.study_name!r}")


def export_trial(
    study: optuna.Study,
    path: Path,
    number: int | None = None,
    field: str | None = None,
    evidence: ValidationEvidence | None = None,
) -> ExplainerConfig:
    """Write the best (or given) trial's config to ``path``; weights paths stay valid from there.

    ``evidence`` (its held-out validation, ``search.validation``) is written with it. A path that
    cannot be a file (a folder, under a file, unwritable) is one ``InputError`` naming ``field``
    (the option that gave it) and leaves nothing behind."""
    where = f"{field} {str(path)!r}" if field else repr(str(path))
    refuse_unfit_path(path, where)
    config = config_of(pick_trial(study, number), study)
    config.validation = evidence
    weights_dir = study.user_attrs.get(WEIGHTS_DIR_ATTR)
    weights = config.model.weights
    if weights_dir and weights and not Path(weights).is_absolute():
        config.model.weights = os.path.relpath(Path(weights_dir) / weights, path.resolve().parent)
    try:
        config.save(path)
    except OSError as error:
        raise InputError(f"{where}: cannot write the config there ({error.strerror or error})") from None
    return config


def refuse_unfit_path(path: Path, where: str) -> None:
    """Refuse a folder, or a path under a file, before any trial is read."""
    if path.is_dir():
        raise InputError(f"{where}: is a folder; give a file path such as {str(path / 'best_composite.json')!r}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise InputError(f"{where}: {str(ancestor)!r} is a file, not a folder; give a path in a folder")


def seed_trials(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """Completed seed trials by composite name."""
    return {
        t.user_attrs[SEED_NAME_ATTR]: t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if SEED_NAME_ATTR in t.user_attrs
    }


__all__ = [
    "best_seed_name",
    "best_trial",
    "config_of",
    "export_trial",
    "pick_trial",
    "refuse_unfit_path",
    "search_objective",
    "seed_trials",
]
