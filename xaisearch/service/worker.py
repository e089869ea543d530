"""A worker: joins a study, builds its workbench once, runs trials until the study's budget.

Crash safety, by storage:

* RDB (PostgreSQL): every trial runs inside ``study.optimize`` with heartbeats, so a worker that
  dies (``kill -9``, OOM, preemption) leaves a trial whose heartbeat stops; the next
  ``fail_stale_trials`` — at any worker's next trial, or on this worker's timer — fails it and
  ``RetryHeartbeatStaleTrialCallback`` re-enqueues it with the same parameters. A lost database
  connection is retried with backoff instead of ending the worker, and the trial it interrupted
  is failed (if Optuna could not) and enqueued again once (``recover_interrupted``).
* Journal file: no heartbeats; the process that launched the workers (``xaisearch run --workers``)
  watches them and fails and re-enqueues a dead worker's running trial (``recover_dead_worker``).

SIGTERM finishes the current trial and stops; a second SIGTERM abandons it: the trial is marked
failed and its parameters are enqueued again, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import optuna

from xaisearch.search.objective import Objective
from xaisearch.search.study import (
    WEIGHTS_DIR_ATTR,
    completed_count,
    make_sampler,
    study_budget,
    study_spec,
    trials_to_start,
)
from xaisearch.search.trial_attributes import CONFIG_ATTR, WORKER_ATTR
from xaisearch.service.storage import Heartbeat, mask_password, storage_kind
from xaisearch.service.studies import load_existing_study

log = logging.getLogger("xaisearch.worker")
RUNNING = optuna.trial.TrialState.RUNNING
RETRY_OF_ATTR = "retry_of"
MAX_RECONNECT_SECONDS = 600


class TrialAbandoned(KeyboardInterrupt):
    """Raised in the main thread by a second SIGTERM: Optuna fails the trial, we re-enqueue it."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerOptions:
    study: str
    storage: str
    device: str = "auto"
    n_trials: int | None = None  # this worker's own cap; the study's budget always applies
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    artifact_dir: str | None = None
    run_dir: Path | None = None  # where the model checkpoint is, if not in the study's attrs

    def command_args(self) -> list[str]:
        """The ``xaisearch worker`` arguments that start a worker with these options, less ``--device``
        (the launcher sets it per child): the one place the worker's command line is spelt out."""
        args = ["--study", self.study, "--storage", self.storage]
        heartbeat = self.heartbeat
        args += ["--heartbeat-interval", str(heartbeat.interval), "--grace-period", str(heartbeat.grace_period)]
        args += ["--n-trials", str(self.n_trials)] if self.n_trials else []
        args += ["--artifact-dir", str(self.artifact_dir)] if self.artifact_dir else []
        args += ["--run-dir", str(self.run_dir)] if self.run_dir else []
        return args


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


class _Signals:
    """First SIGTERM/SIGINT: stop after this trial. Second: abandon it."""

    def __init__(self) -> None:
        self.stopping = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            raise TrialAbandoned()
        self.stopping = True
        log.warning("signal %d: finishing the current trial, then stopping (again to abandon it)", signum)


def _is_connection_error(error: BaseException | None) -> bool:
    """A lost database connection anywhere in the exception chain (Optuna can mask the original
    error with its own when a ``tell`` fails, so the chain is walked)."""
    import sqlalchemy.exc

    lost = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, lost):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _sweep_stale_trials(study: optuna.Study, every: float, done: threading.Event) -> None:
    """Fail stale trials on a timer, so a retry happens even while every worker is busy."""
    while not done.wait(every):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        except Exception as error:  # the main loop reports connection problems; keep sweeping
            log.debug("stale-trial sweep failed: %s", mask_password(str(error)))


def run_trials(
    study: optuna.Study,
    objective: Callable,
    cap: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    wait_for_running: float | None = None,
) -> int:
    """Run one trial at a time while the study's budget (and this worker's ``cap``) allow it.

    The budget is re-read before every trial, so workers joined at any time stop together. With
    ``wait_for_running`` (seconds; RDB storages), a worker whose remaining budget is held by other
    workers' running trials waits instead of leaving: if one of them dies, its trial turns stale,
    is failed and re-enqueued, and this worker runs the retry.
    """
    budget = study_budget(study)
    ran = 0
    callbacks = [on_trial] if on_trial is not None else []
    while not should_stop() and (cap is None or ran < cap):
        if trials_to_start(study, budget) <= 0:
            if wait_for_running is None or completed_count(study) >= budget:
                break
            time.sleep(wait_for_running)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            continue
        study.optimize(
            objective, n_trials=1, callbacks=callbacks, catch=(RuntimeError, FloatingPointError), gc_after_trial=False
        )
        ran += 1
    return ran


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


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    values = "" if trial.values is None else " value " + ",".join(f"{v:.6f}" for v in trial.values)
    log.info("trial %d %s%s params %s", trial.number, trial.state.name.lower(), values, sorted(trial.params.items()))


def run_worker(options: WorkerOptions) -> int:
    """Join ``options.study`` and run trials until its budget is reached; returns trials run."""
    from xaisearch.devices import resolve_device
    from xaisearch.search.workbench import Workbench

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log line per trial says it all
    me = worker_id()
    rdb = storage_kind(options.storage) != "journal"
    heartbeat = options.heartbeat if rdb else None
    study = load_existing_study(options.study, options.storage, heartbeat, application_name=f"xaisearch-worker-{me}")
    spec = study_spec(study)
    run_dir = options.run_dir or Path(study.user_attrs.get(WEIGHTS_DIR_ATTR) or Path("runs") / spec.name)
    device = resolve_device(options.device if options.device != "auto" else spec.device)
    bench = Workbench.prepare(spec, run_dir, device, allow_training=False)
    study.sampler = make_sampler(spec, bench.space, worker=me)
    upload = None
    if options.artifact_dir:
        from xaisearch.service.artifacts import heatmap_uploader, open_artifact_store

        upload = heatmap_uploader(open_artifact_store(options.artifact_dir))
    objective = Objective(bench, worker=me, upload_heatmaps=upload)
    signals = _Signals()
    signals.install()
    done = threading.Event()
    if rdb:
        threading.Thread(
            target=_sweep_stale_trials, args=(study, options.heartbeat.interval, done), daemon=True
        ).start()
    log.info("worker %s joined study %s on %s (device %s)", me, options.study, mask_password(options.storage), device)
    finished: list[int] = []
    in_flight: list[int] = []  # started and not reported finished: the one running, or interrupted ones
    backoff, down_since = 1.0, None

    def tracked(trial: optuna.Trial) -> float | Sequence[float]:
        in_flight.append(trial.number)
        return objective(trial)

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal backoff, down_since
        finished.append(trial.number)
        if trial.number in in_flight:
            in_flight.remove(trial.number)
        backoff, down_since = 1.0, None
        _log_trial(study, trial)

    try:
        while True:
            try:
                while in_flight:  # trials a lost connection interrupted (none on the first round)
                    recover_interrupted(study, in_flight[0])
                    in_flight.pop(0)
                cap = None if options.n_trials is None else options.n_trials - len(finished)
                wait = float(options.heartbeat.interval) if rdb else None
                run_trials(study, tracked, cap, lambda: signals.stopping, on_trial, wait)
                break
            except TrialAbandoned:
                for number in in_flight:  # the trial the signal interrupted (Optuna failed it)
                    recover_interrupted(study, number, "was abandoned on a second signal")
                break
            except Exception as error:
                if not _is_connection_error(error):
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > MAX_RECONNECT_SECONDS:
                    raise
                reason = mask_password((str(error).splitlines() or [type(error).__name__])[0])
                log.warning("storage unreachable (%s); retrying in %.0f s", reason, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
    finally:
        done.set()
    log.info("worker %s stopped after %d trials", me, len(finished))
    return len(finished)
