"""`xaisearch run --workers K` on the journal file: the launcher recovers a killed worker's trial."""

import os
import signal
import subprocess
import sys

import optuna

from tests.service.conftest import assert_integrity, load, wait_for


def test_run_with_two_workers_survives_a_kill_9(service_study, tmp_path):
    out = tmp_path / "run"
    journal = str(out / "optuna.journal")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xaisearch.cli",
            "run",
            str(service_study),
            "--out",
            str(out),
            "--workers",
            "2",
            "--n-trials",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    wait_for(lambda: (out / "optuna.journal").exists(), timeout=300)
    study = load(journal)

    def running_trial_after_seeds():
        return next(
            (
                t
                for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                if t.number >= 2 and "config" in t.user_attrs  # sampled, now evaluating
            ),
            None,
        )

    victim = wait_for(running_trial_after_seeds, timeout=300)
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    study = load(journal)
    assert study.trials[victim.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == study.trials[victim.number].params
    assert_integrity(study, budget=10, workers=2)
    assert "died" in output and (out / "best_composite.json").exists()
