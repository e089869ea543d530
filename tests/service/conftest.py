"""Fixtures for the distributed-service tests: a real PostgreSQL, a prepared study, workers."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from tests.search.conftest import TINY_STUDY
from tests.service.pgcluster import Cluster, find_bin, start

# a study whose trials take about a second, so a worker can be killed in mid-trial
SERVICE_STUDY = copy.deepcopy(TINY_STUDY)
SERVICE_STUDY.update(name="service", n_trials=20, n_heatmaps=0)
SERVICE_STUDY["data"] = {"n_eval": 48, "batch_size": 16}
SERVICE_STUDY["metrics"] = [
    {"name": "relevance_mass_accuracy", "weight": 1.0},
    {"name": "pixel_flipping", "weight": 1.0, "params": {"steps": 16}},
]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The cluster ``.ci/run`` started (named by XAISEARCH_TEST_PG_*), else a new one for this session."""
    cluster = Cluster.from_env()
    if cluster is not None:
        yield cluster
        return
    if find_bin("initdb") is None:
        pytest.skip("optional resource missing: PostgreSQL (no initdb here); .ci/run installs it")
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="xaisearch-pg-"))
    folder.chmod(0o755)  # the postgres user must reach it (pytest's tmp folders are private)
    cluster = start(folder / "data")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres, monkeypatch) -> str:
    """A fresh schema-less database URL per test: studies of one test never meet another's."""
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    env = {**os.environ, "PGPASSWORD": postgres.password}
    subprocess.run(
        [str(postgres.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "xaisearch", name],
        env=env,
        check=True,
        capture_output=True,
    )
    return postgres.url.rsplit("/", 1)[0] + "/" + name


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xaisearch.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def start_worker(study: str, storage: str, log: Path, *extra: str) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xaisearch.cli",
            "worker",
            "--study",
            study,
            "--storage",
            storage,
            "--device",
            "cpu",
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


@pytest.fixture
def service_study(tmp_path) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(SERVICE_STUDY))
    return path


def create(study_file: Path, storage: str, out: Path, n_trials: int | None = None) -> None:
    args = ["create", str(study_file), "--storage", storage, "--out", str(out)]
    args += ["--n-trials", str(n_trials)] if n_trials else []
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def trials_run_by_logs(*logs: Path) -> list[int]:
    """Trial numbers that workers logged as finished (complete or fail), one entry per log line."""
    pattern = re.compile(r"trial (\d+) (complete|fail|pruned)")
    return [int(m.group(1)) for log in logs for m in pattern.finditer(log.read_text())]


def wait_for(condition, timeout: float = 120.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def load(storage: str, name: str = "service") -> optuna.Study:
    from xaisearch.service.studies import load_existing_study

    return load_existing_study(name, storage)


def assert_integrity(study: optuna.Study, budget: int, workers: int) -> None:
    """Budget reached; every failed trial was retried with the same params (those it had drawn) and completed;
    trial numbers unique; at most ``workers - 1`` completed past the budget."""
    trials = study.get_trials(deepcopy=False)
    states = {t.number: t.state for t in trials}
    assert len(states) == len(trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert budget <= len(complete) <= budget + workers - 1
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING], "a trial was left running"
    for failed in (t for t in trials if t.state == optuna.trial.TrialState.FAIL):
        # a trial interrupted while it sampled holds only the parameters it had drawn: its retry
        # runs with exactly those fixed and draws the rest
        chosen = failed.params.items()
        retries = [t for t in complete if chosen <= t.params.items() and t.number > failed.number]
        assert retries, f"failed trial {failed.number} was never retried to completion"
