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

SIGTERM (preemption) finishes the current trial and stops; a second SIGTERM abandons it: the
trial is marked failed and its parameters are enqueued again (``recovery``), so nothing is lost.
SIGINT (Ctrl-C) abandons it at once, in a worker as in ``xaisearch run`` in one process
(``run_interruptibly``); the next run of the same command runs the trial it cut short.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import optuna

from xaisearch.errors import Interrupted
from xaisearch.search.objective import Objective, TrialFailed
from xaisearch.search.study import (
    WEIGHTS_DIR_ATTR,
    completed_count,
    make_sampler,
    study_budget,
    study_spec,
    trials_to_start,
)
from xaisearch.service.recovery import (
    InFlight,
)
from xaisearch.service.storage import Heartbeat, mask_password, storage_kind
from xaisearch.service.studies import load_existing_study

log = logging.getLogger("xaisearch.worker")
MAX_RECONNECT_SECONDS = 600


class TrialAbandoned(KeyboardInterrupt):
    """Raised in the main thread by a second SIGTERM: Optuna fails the trial, we re-enqueue it."""


class _OneLineTrialFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback. A ``TrialFailed`` says in its message which
    metric failed and why, so its traceback is dropped; a trial cut short by a signal is logged
    twice, and ``requeue`` says it in one line instead, so both records are dropped. (On Optuna's
    handlers: a logger's own filters do not see the records of its child loggers.)"""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TrialFailed):
            record.exc_info, record.exc_text = None, None
        self.interrupted = self.interrupted or isinstance(error, KeyboardInterrupt)
        return not (self.interrupted and record.getMessage().startswith("Trial "))


def run_interruptibly(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """``run_trials`` in this process; Ctrl-C re-enqueues the trial it interrupted and raises
    ``Interrupted``, so the same command resumes where this one stopped."""
    tracked = InFlight(objective)

    def reported(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tracked.finished(trial.number)
        if on_trial is not None:
            on_trial(study, trial)

    try:
        return run_trials(study, tracked, on_trial=reported)
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the recovery
        try:
            tracked.recover(study, "was interrupted by Ctrl-C")
        finally:
            signal.signal(signal.SIGINT, previous)
        raise Interrupted() from None


@contextmanager
def _until(done: threading.Event) -> Iterator[None]:
    """Set ``done`` when the block ends, however it ends (it stops the stale-trial sweep)."""
    try:
        yield
    finally:
        done.set()


@contextmanager
def one_line_trial_failures() -> Iterator[None]:
    """Optuna's handlers report failed and interrupted trials without tracebacks (see the filter)."""
    quiet = _OneLineTrialFailures()
    handlers = logging.getLogger("optuna").handlers
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


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


class _Signals:
    """SIGTERM (preemption, ``docker stop``): stop after this trial; a second one abandons it.
    SIGINT (Ctrl-C, or the launcher passing it on): abandon the trial at once, as ``xaisearch run``
    does; further SIGINTs are ignored so that the recovery is not cut short."""

    def __init__(self) -> None:
        self.stopping = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.stopping or signum == signal.SIGINT:
            self.stopping = True
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
    with one_line_trial_failures():
        return _run_trials(study, objective, cap, should_stop, on_trial, wait_for_running)


def _run_trials(
    study: optuna.Study,
    objective: Callable,
    cap: int | None,
    should_stop: Callable[[], bool],
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
    wait_for_running: float | None,
) -> int:
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


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    values = "" if trial.values is None else " value " + ",".join(f"{v:.6f}" for v in trial.values)
    log.info("trial %d %s%s params %s", trial.number, trial.state.name.lower(), values, sorted(trial.params.items()))


def run_worker(options: WorkerOptions) -> int:
    """Join ``options.study`` and run trials until its budget is reached; returns trials run.
    A SIGINT before the first trial (the model still loading) ends the worker as ``Interrupted``."""
    signals = _Signals()
    signals.install()  # first thing: Ctrl-C arrives from the terminal and from the launcher, at any time
    try:
        return _run_worker(options, signals)
    except TrialAbandoned:
        raise Interrupted() from None


def _run_worker(options: WorkerOptions, signals: _Signals) -> int:
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
    study.sampler = make_sampler(spec, bench.space)
    upload = None
    if options.artifact_dir:
        from xaisearch.service.artifacts import heatmap_uploader, open_artifact_store

        upload = heatmap_uploader(open_artifact_store(options.artifact_dir))
    objective = Objective(bench, worker=me, upload_heatmaps=upload)
    done = threading.Event()
    if rdb:
        threading.Thread(
            target=_sweep_stale_trials, args=(study, options.heartbeat.interval, done), daemon=True
        ).start()
    log.info("worker %s joined study %s on %s (device %s)", me, options.study, mask_password(options.storage), device)
    finished: list[int] = []
    tracked = InFlight(objective)  # started and not reported finished: the one running, or interrupted ones
    backoff, down_since = 1.0, None

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal backoff, down_since
        finished.append(trial.number)
        tracked.finished(trial.number)
        backoff, down_since = 1.0, None
        _log_trial(study, trial)

    with _until(done):
        while True:
            try:
                tracked.recover(study, "was interrupted by a lost storage connection")  # none on the first round
                cap = None if options.n_trials is None else options.n_trials - len(finished)
                wait = float(options.heartbeat.interval) if rdb else None
                run_trials(study, tracked, cap, lambda: signals.stopping, on_trial, wait)
                break
            except TrialAbandoned:
                tracked.recover(study, "was abandoned on a signal")  # Optuna has failed it
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
    log.info("worker %s stopped after %d trials", me, len(finished))
    return len(finished)
