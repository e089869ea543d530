"""Recovering trials that a crash, a signal or a lost connection interrupted: fail them, enqueue
their parameters again exactly once, so that no trial is lost and none is run twice."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

import optuna

from xaisearch.search.trial_attributes import CONFIG_ATTR, WORKER_ATTR

log = logging.getLogger("xaisearch.worker")
RUNNING = optuna.trial.TrialState.RUNNING
RETRY_OF_ATTR = "retry_of"


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
    """Enqueue ``trial``'s parameters again (a trial that failed by crash or abandonment)."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in (CONFIG_ATTR, WORKER_ATTR)}
    attrs[RETRY_OF_ATTR] = trial.number
    study.enqueue_trial(trial.params, user_attrs=attrs)
    log.warning("trial %d %s; re-enqueued with the same parameters", trial.number, reason)


def mark_failed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Set a running trial FAIL in the storage, as ``fail_stale_trials`` does.

    Not ``study.tell``: that runs the sampler's ``after_trial``, and a grid sampler whose last
    point this was calls ``study.stop()``, which raises outside ``optimize``.
    """
    try:
        study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # finished meanwhile (by its own worker or by the stale-heartbeat sweep)


def has_retry(study: optuna.Study, number: int) -> bool:
    """Whether trial ``number``'s parameters were already enqueued again (by us or by Optuna's retry callback)."""
    return any(
        t.number > number
        and (t.user_attrs.get(RETRY_OF_ATTR) == number or number in t.system_attrs.get("retry_history", ()))
        for t in study.get_trials(deepcopy=False)
    )


def recover_interrupted(
    study: optuna.Study, number: int, reason: str = "was interrupted by a lost storage connection"
) -> None:
    """The trial a lost storage connection interrupted: fail it if it still runs, enqueue its parameters once.

    Optuna fails a trial whose objective raised when it can still reach the storage (a database
    restart takes a second), and no retry callback sees such a trial: without this, it is lost.
    """
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None or trial.state not in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL):
        return
    if trial.state == optuna.trial.TrialState.RUNNING:
        mark_failed(study, trial)
    if not has_retry(study, number):
        requeue(study, trial, reason)


def recover_dead_worker(study: optuna.Study, dead_worker: str) -> list[int]:
    """Fail and re-enqueue the RUNNING trials of a worker that died (journal storages)."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(RUNNING,)):
        if trial.user_attrs.get(WORKER_ATTR) == dead_worker:
            mark_failed(study, trial)
            requeue(study, trial, f"was running on {dead_worker}, which died")
            recovered.append(trial.number)
    return recovered


def recover_orphans(study: optuna.Study) -> list[int]:
    """Fail and re-enqueue RUNNING trials of workers on this host whose process is gone
    (a run killed earlier, on a storage without heartbeats)."""
    host = socket.gethostname()
    recovered = []
    for worker in {t.user_attrs.get(WORKER_ATTR) for t in study.get_trials(deepcopy=False, states=(RUNNING,))}:
        if not worker or worker.rsplit(":", 1)[0] != host:
            continue
        try:
            os.kill(int(worker.rsplit(":", 1)[1]), 0)
        except ProcessLookupError:
            recovered += recover_dead_worker(study, worker)
        except (PermissionError, ValueError):
            continue
    return recovered


class InFlight:
    """Wraps an objective to know which trials started and were not reported finished: after an
    interruption (a signal, a lost connection) those are the ones to fail and enqueue again."""

    def __init__(self, objective: Callable[[optuna.Trial], float | Sequence[float]]) -> None:
        self.objective = objective
        self.numbers: list[int] = []

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        self.numbers.append(trial.number)
        return self.objective(trial)

    def finished(self, number: int) -> None:
        if number in self.numbers:
            self.numbers.remove(number)

    def recover(self, study: optuna.Study, reason: str) -> None:
        while self.numbers:
            recover_interrupted(study, self.numbers[0], reason)
            self.numbers.pop(0)
