"""Ctrl-C and concurrent runs lose no trial, with real processes and real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna

from tests.service.conftest import load, wait_for
from xaisearch.spec import SEED_COMPOSITES

COMPLETE, FAIL, WAITING = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.FAIL,
    optuna.trial.TrialState.WAITING,
)


def start_run(study_file: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``xaisearch run`` in its own process group, as a terminal runs a foreground job."""
    return subprocess.Popen(
        [sys.executable, "-m", "xaisearch.cli", "run", str(study_file), "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        start_new_session=True,
    )


def evaluating_trial(journal: str) -> optuna.trial.FrozenTrial | None:
    if not Path(journal).exists():
        return None
    running = load(journal).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return next((t for t in running if "config" in t.user_attrs), None)  # sampled, now evaluating


def ctrl_c(process: subprocess.Popen) -> str:
    """Send SIGINT to the whole process group (what Ctrl-C in a terminal does); the output."""
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    return output


def drawn(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's parameters; an enqueued (waiting) trial holds them as its fixed parameters."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def assert_resumed(journal: str, victim: optuna.trial.FrozenTrial) -> None:
    study = load(journal)
    assert study.trials[victim.number].state == FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and drawn(retries[0]) == victim.params


def test_ctrl_c_re_enqueues_the_interrupted_seed_and_the_same_command_resumes(service_study, tmp_path):
    out = tmp_path / "run"
    journal = str(out / "optuna.journal")
    run = start_run(service_study, out, "--n-trials", "8")
    victim = wait_for(lambda: evaluating_trial(journal), timeout=300)  # trial 0: a seed composite
    output = ctrl_c(run)
    assert run.returncode == 130, output
    assert "interrupted; run the same command to resume" in output and "Traceback" not in output, output
    assert_resumed(journal, victim)
    assert not list(out.rglob("*.tmp"))

    again = subprocess.run(
        [sys.executable, "-m", "xaisearch.cli", "run", str(service_study), "--out", str(out), "--n-trials", "8"],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    study = load(journal)
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == victim.number)
    assert retry.state == COMPLETE
    enqueued = {t.user_attrs["seed_composite"] for t in study.trials if "seed_composite" in t.user_attrs}
    scored = {t.user_attrs.get("seed_composite") for t in study.trials if t.state == COMPLETE}
    assert victim.user_attrs["seed_composite"] in enqueued and enqueued <= scored  # every seed scored, once
    assert enqueued <= set(SEED_COMPOSITES)
    assert len([t for t in study.trials if t.state == COMPLETE]) == 8


def test_ctrl_c_with_two_workers_loses_no_trial(service_study, tmp_path):
    out = tmp_path / "run"
    journal = str(out / "optuna.journal")
    run = start_run(service_study, out, "--workers", "2", "--n-trials", "8")
    wait_for(lambda: evaluating_trial(journal), timeout=300)
    output = ctrl_c(run)
    assert run.returncode == 130, output
    assert "interrupted; run the same command to resume" in output and "Traceback" not in output, output
    study = load(journal)
    assert not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in study.get_trials(deepcopy=False, states=(FAIL,)):
        retries = [t for t in study.trials if t.user_attrs.get("retry_of") == trial.number]
        assert len(retries) == 1 and drawn(retries[0]) == trial.params


def test_two_runs_of_one_study_at_once_draw_different_trials_and_both_finish(service_study, tmp_path):
    out = tmp_path / "run"
    runs = [start_run(service_study, out, "--n-trials", "10") for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    study = load(str(out / "optuna.journal"))
    sampled = [t for t in study.trials if t.state == COMPLETE and "seed_composite" not in t.user_attrs]
    assert len(sampled) >= 4
    drawn_points = [tuple(sorted(t.params.items())) for t in sampled]
    assert len(set(drawn_points)) == len(drawn_points)  # one seed per process drew the same points twice
    assert (out / "report.html").exists() and not list(out.rglob("*.tmp"))
