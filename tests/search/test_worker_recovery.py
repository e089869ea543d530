"""A trial interrupted by a lost storage connection is failed and enqueued again exactly once."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import RetryFailedTrialCallback

from xaisearch.service.recovery import RETRY_OF_ATTR, has_retry, recover_interrupted

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def study_with_running_trial() -> tuple[optuna.Study, int]:
    study = optuna.create_study()
    trial = study.ask({"gamma": optuna.distributions.FloatDistribution(0.0, 1.0)})
    return study, trial.number


def waiting(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))


def test_a_running_trial_is_failed_and_enqueued_once():
    study, number = study_with_running_trial()
    recover_interrupted(study, number)
    recover_interrupted(study, number)  # a second recovery (another reconnect) adds nothing
    assert study.trials[number].state == optuna.trial.TrialState.FAIL
    (retry,) = waiting(study)
    assert retry.system_attrs["fixed_params"] == study.trials[number].params  # enqueued: run with these
    assert retry.user_attrs[RETRY_OF_ATTR] == number


def test_a_trial_optuna_already_failed_is_enqueued_once():
    study, number = study_with_running_trial()
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    recover_interrupted(study, number)
    assert len(waiting(study)) == 1 and has_retry(study, number)


def test_finished_trials_and_heartbeat_retries_are_left_alone():
    study, number = study_with_running_trial()
    study.tell(number, 0.5)
    recover_interrupted(study, number)
    assert waiting(study) == []
    study, number = study_with_running_trial()
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    RetryFailedTrialCallback()(study, study.trials[number])  # what the stale-heartbeat sweep does
    recover_interrupted(study, number)
    assert len(waiting(study)) == 1


def test_the_last_point_of_a_grid_is_recovered_without_stopping_the_study():
    """``study.tell`` would run the grid sampler's ``after_trial``, which stops the study outside ``optimize``."""
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"gamma": [0.25]}))
    trial = study.ask()
    trial.suggest_categorical("gamma", [0.25])
    recover_interrupted(study, trial.number)
    assert study.trials[trial.number].state == optuna.trial.TrialState.FAIL
    assert len(waiting(study)) == 1
