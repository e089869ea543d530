"""Multi-objective studies, Wilcoxon pruning, heatmap artifacts and the dashboard that shows them."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

from xaisearch.cli import main


def journal(out):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))


def test_multi_objective_study_has_a_pareto_front_and_exports_one_of_it(tiny_study, write_study, tmp_path):
    tiny_study.update(n_trials=4, objective={"type": "multi"}, sampler={"name": "nsga2"})
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 0
    study = optuna.load_study(study_name="tiny", storage=journal(out))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]  # RMA and PF AOPC: higher is better
    assert all(len(t.values) == 2 for t in study.trials)
    exported = json.loads((out / "best_composite.json").read_text())
    assert exported["trial"] in {t.number for t in study.best_trials}


def test_wilcoxon_pruning_reports_per_batch(tiny_study, write_study, tmp_path):
    tiny_study.update(n_trials=12, objective={"pruner": "wilcoxon"}, sampler={"name": "random"})
    tiny_study["data"] = {"n_eval": 32, "batch_size": 4}
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 0
    study = optuna.load_study(study_name="tiny", storage=journal(out))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(sorted(t.intermediate_values) == list(range(8)) for t in complete)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.user_attrs["pruned_after_batches"] < 8 for t in pruned)
    assert len(complete) + len(pruned) == 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_trials_upload_heatmaps_and_the_dashboard_serves_them(tiny_study, write_study, tmp_path):
    tiny_study.update(n_trials=2, n_heatmaps=3)
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 0
    pngs = list((out / "artifacts").iterdir())
    assert len(pngs) == 6 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xaisearch.cli",
            "dashboard",
            "--storage",
            str(out / "optuna.journal"),
            "--artifact-dir",
            str(out / "artifacts"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=5))
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "dashboard did not start"
                time.sleep(0.5)
        study_id = studies["study_summaries"][0]["study_id"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=10))
        trial = detail["trials"][0]
        assert len(trial["artifacts"]) == 3
        artifact = trial["artifacts"][0]
        url = f"{base}/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "image/png"
            assert response.read()[:4] == b"\x89PNG"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sigterm_lets_the_worker_finish_its_trial(tiny_study, write_study, tmp_path):
    tiny_study.update(n_trials=50)
    tiny_study["data"] = {"n_eval": 64, "batch_size": 16}
    out = tmp_path / "run"
    study_file = write_study(tiny_study)
    assert main(["create", str(study_file), "--storage", str(out / "optuna.journal"), "--out", str(out)]) == 0
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xaisearch.cli",
            "worker",
            "--study",
            "tiny",
            "--storage",
            str(out / "optuna.journal"),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    study = optuna.load_study(study_name="tiny", storage=journal(out))
    deadline = time.monotonic() + 120
    while not any("config" in t.user_attrs for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))):
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.1)
    os.kill(worker.pid, signal.SIGTERM)
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    states = [t.state for t in optuna.load_study(study_name="tiny", storage=journal(out)).trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.FAIL not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) < 50 and "finishing the current trial" in output


def test_a_study_can_use_a_pinned_suite_normalised_by_the_seeds(tiny_study, write_study, tmp_path):
    del tiny_study["metrics"]
    tiny_study.update(n_trials=3, suite="fast", objective={"normalisation": "seed"})
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 0
    study = optuna.load_study(study_name="tiny", storage=journal(out))
    for name in ("relevance_mass_accuracy", "relevance_rank_accuracy", "pixel_flipping", "sparseness"):
        assert all(
            isinstance(t.user_attrs[f"{name}.mean"], float) and t.user_attrs[f"{name}.sem"] >= 0 for t in study.trials
        )
    # z-scores against the three seeds, which are the three trials here: they average to 0
    assert abs(sum(t.value for t in study.trials)) < 1e-6


def test_suite_and_metrics_together_are_refused(tiny_study, write_study, tmp_path, capsys):
    tiny_study["suite"] = "fast"
    assert main(["run", str(write_study(tiny_study)), "--out", str(tmp_path / "run")]) == 2
    assert "either 'metrics'" in capsys.readouterr().err
