"""Workers on a real PostgreSQL: budget, no trial lost or run twice, crash and restart recovery."""

import copy
import os
import signal

import optuna
import yaml

from tests.service.conftest import (
    SERVICE_STUDY,
    assert_integrity,
    create,
    load,
    start_worker,
    trials_run_by_logs,
    wait_for,
)

SHORT_HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "4")


def test_two_workers_complete_the_budget_with_no_trial_lost_or_run_twice(pg_url, service_study, tmp_path):
    create(service_study, pg_url, tmp_path / "run")
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [start_worker("service", pg_url, log, *SHORT_HEARTBEAT) for log in logs]
    for worker in workers:
        assert worker.wait(timeout=600) == 0
    study = load(pg_url)
    assert_integrity(study, budget=20, workers=2)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    logged = trials_run_by_logs(*logs)
    assert sorted(logged) == sorted(t.number for t in study.trials)  # each trial ran once, in one worker
    assert all(log.read_text().count("trial ") > 0 for log in logs)  # both workers took part
    seeds = [t for t in study.trials if "seed_composite" in t.user_attrs]
    assert len({t.user_attrs["seed_composite"] for t in seeds}) == len(seeds) == 3  # each seed once


def test_a_worker_killed_mid_trial_is_retried_with_the_same_parameters(pg_url, tmp_path):
    # trials several times longer than the service study's, so that the kill lands inside one
    slow = copy.deepcopy(SERVICE_STUDY)
    slow["data"] = {"n_eval": 192, "batch_size": 16}
    slow["metrics"][1]["params"] = {"steps": 48}
    study_file = tmp_path / "slow.yaml"
    study_file.write_text(yaml.safe_dump(slow))
    create(study_file, pg_url, tmp_path / "run", n_trials=8)
    victim = start_worker("service", pg_url, tmp_path / "victim.log", *SHORT_HEARTBEAT)
    study = load(pg_url)

    def victims_running_trial():
        return next(
            (
                t
                for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                if t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and "config" in t.user_attrs
            ),
            None,
        )

    killed = wait_for(victims_running_trial, every=0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = start_worker("service", pg_url, tmp_path / "survivor.log", *SHORT_HEARTBEAT)
    assert survivor.wait(timeout=600) == 0
    study = load(pg_url)
    failed = study.trials[killed.number]
    assert failed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == failed.params
    assert_integrity(study, budget=8, workers=1)


def test_a_postgres_restart_ends_no_worker_and_loses_no_trial(postgres, pg_url, service_study, tmp_path):
    create(service_study, pg_url, tmp_path / "run", n_trials=12)
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [start_worker("service", pg_url, log, *SHORT_HEARTBEAT) for log in logs]
    study = load(pg_url)
    wait_for(lambda: len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= 3)
    postgres.restart()
    for worker in workers:
        assert worker.wait(timeout=600) == 0
    assert_integrity(load(pg_url), budget=12, workers=2)
