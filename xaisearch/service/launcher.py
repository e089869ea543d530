"""Run several worker processes on one machine and watch them.

One process per device (``CUDA_VISIBLE_DEVICES`` set per process, so each sees its GPU as
``cuda:0``; ``cpu`` entries give CPU workers). Storages without heartbeats (the journal file)
rely on this watcher: when a worker dies, its running trial is failed and re-enqueued with the
same parameters, and a replacement worker is started while the budget is not reached.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from xaisearch.service.storage import storage_kind

log = logging.getLogger("xaisearch.launcher")
POLL_SECONDS = 0.5
STOP_SECONDS = 60.0  # how long workers get to enqueue their trials again after Ctrl-C


def _command(device: str, worker_args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if device in ("auto", "cpu"):
        chosen = device
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        env["CUDA_VISIBLE_DEVICES"] = device
        chosen = "cuda:0"
    return [sys.executable, "-m", "xaisearch.cli", "worker", *worker_args, "--device", chosen], env


def launch_workers(
    study_name: str,
    storage_url: str,
    devices: Sequence[str],
    worker_args: Sequence[str],
    budget_reached: Callable[[], bool],
    max_restarts: int | None = None,
) -> int:
    """Start one worker per device, restart dead ones while the budget is open; returns the
    number of workers that died. Each dead worker's running trials are recovered first."""
    from xaisearch.service.recovery import recover_dead_worker
    from xaisearch.service.studies import load_existing_study

    journal = storage_kind(storage_url) == "journal"
    max_restarts = 3 * len(devices) if max_restarts is None else max_restarts
    processes: dict[int, tuple[str, subprocess.Popen]] = {}

    def start(device: str) -> None:
        command, env = _command(device, worker_args)
        process = subprocess.Popen(command, env=env)
        processes[process.pid] = (device, process)

    def forward(signum: int, frame: FrameType | None) -> None:
        for _, process in processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    deaths = 0
    try:
        for device in devices:
            start(device)
        while processes:
            time.sleep(POLL_SECONDS)
            for pid, (device, process) in list(processes.items()):
                code = process.poll()
                if code is None:
                    continue
                del processes[pid]
                if code == 0:
                    continue
                deaths += 1
                dead = f"{socket.gethostname()}:{pid}"
                log.warning("worker %s exited with code %s", dead, code)
                if journal:  # RDB storages recover through heartbeats instead
                    recover_dead_worker(load_existing_study(study_name, storage_url), dead)
                if code != 2 and not budget_reached() and deaths <= max_restarts:
                    start(device)
    except KeyboardInterrupt:
        stop_on_interrupt(processes, study_name, storage_url, journal)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        forward(signal.SIGTERM, None)
    return deaths


def stop_on_interrupt(
    processes: dict[int, tuple[str, subprocess.Popen]], study_name: str, storage_url: str, journal: bool
) -> None:
    """Ctrl-C: every worker abandons its trial and enqueues it again (SIGINT; a terminal has sent
    it to them already, a ``kill -INT`` of this process has not), and this waits for them, so that
    the command exits with nothing lost. A worker that does not stop in time is killed and its
    running trial recovered here (journal; RDB storages recover it through heartbeats)."""
    from xaisearch.service.recovery import recover_dead_worker
    from xaisearch.service.studies import load_existing_study

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    for _, process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    for pid, (_, process) in processes.items():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if journal:
                recover_dead_worker(load_existing_study(study_name, storage_url), f"{socket.gethostname()}:{pid}")
    processes.clear()
