"""The main job on a tiny study: run, outputs, resume, status and export through the CLI."""

import json

import optuna
import torch
from zennit.attribution import Gradient

import xaisearch
from xaisearch.cli import main
from xaisearch.explain.config import ExplainerConfig
from xaisearch.search.study import SEED_NAME_ATTR


def journal_storage(out):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))


def trials_in(out):
    return optuna.load_study(study_name="tiny", storage=journal_storage(out)).trials


def test_three_trials_end_to_end_then_resume(tiny_study, write_study, tmp_path, capsys):
    study_file = write_study(tiny_study)
    out = tmp_path / "run"
    assert main(["run", str(study_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    trials = trials_in(out)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert [t.user_attrs[SEED_NAME_ATTR] for t in trials] == ["epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box"]
    for trial in trials:
        for metric in ("relevance_mass_accuracy", "pixel_flipping"):
            assert isinstance(trial.user_attrs[f"{metric}.mean"], float)
            assert trial.user_attrs[f"{metric}.sem"] >= 0
    assert "winner, chosen on 16 held-out images" in printed and "against the runner-up" in printed
    assert (out / "report.html").stat().st_size > 10_000
    config = ExplainerConfig.from_json((out / "best_composite.json").read_text())
    assert config.validation is not None and config.validation.heldout.n_images == 16
    best_on_search = max(trials, key=lambda t: t.value)
    assert config.validation.search_best == best_on_search.number
    assert config.scores["objective"] == trials[config.trial].value

    # the exported config reproduces attributions with plain zennit
    model = xaisearch.model_from_config(out / "best_composite.json")
    composite = xaisearch.composite_from_config(out / "best_composite.json", model)
    x = torch.rand(2, 3, 32, 32)
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x, torch.eye(4)[[0, 1]])
    assert relevance.shape == x.shape and torch.isfinite(relevance).all()

    # a re-run resumes: nothing new to do, the model is loaded from the run directory
    assert main(["run", str(study_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nothing to run" in printed and "loaded cached" in printed
    assert len(trials_in(out)) == 3

    # a larger budget continues the same study with sampled trials (the alpha-beta seeds are
    # outside this space, so the three seeds above were all of them)
    assert main(["run", str(study_file), "--out", str(out), "--n-trials", "5"]) == 0
    trials = trials_in(out)
    assert len(trials) == 5 and not any(SEED_NAME_ATTR in t.user_attrs for t in trials[3:])

    storage = str(out / "optuna.journal")
    assert main(["status", "--study", "tiny", "--storage", storage]) == 0
    assert "5 complete" in capsys.readouterr().out
    exported = tmp_path / "elsewhere" / "trial1.json"
    assert main(["export", "--study", "tiny", "--storage", storage, "-o", str(exported), "--trial", "1"]) == 0
    data = json.loads(exported.read_text())
    assert data["trial"] == 1 and data["model"]["weights"].endswith("model.pt")
    assert xaisearch.model_from_config(exported) is not None


def test_a_changed_study_file_is_not_mixed_into_an_existing_study(tiny_study, write_study, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out), "--n-trials", "1"]) == 0
    tiny_study["metrics"][0]["weight"] = 2.0
    assert main(["run", str(write_study(tiny_study, "changed.yaml")), "--out", str(out)]) == 2
    assert "different study file" in capsys.readouterr().err


def test_unknown_study_is_a_one_line_error(tmp_path, capsys):
    journal = tmp_path / "empty.journal"
    optuna.create_study(
        study_name="other",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert main(["status", "--study", "missing", "--storage", str(journal)]) == 2
    assert "study 'missing' not found" in capsys.readouterr().err


def test_a_rerun_recovers_a_trial_left_running_by_a_killed_run(tiny_study, write_study, tmp_path, capsys):
    import socket
    import subprocess
    import sys

    out = tmp_path / "run"
    study_file = write_study(tiny_study)
    assert main(["run", str(study_file), "--out", str(out), "--n-trials", "1"]) == 0
    study = optuna.load_study(study_name="tiny", storage=journal_storage(out))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = study.ask({})  # what a `kill -9`ed run leaves behind: RUNNING, its worker gone
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{gone.stdout.strip()}")
    assert main(["run", str(study_file), "--out", str(out), "--n-trials", "2"]) == 0
    assert f"trial {orphan.number} was left running" in capsys.readouterr().out
    trials = optuna.load_study(study_name="tiny", storage=journal_storage(out)).trials
    assert trials[orphan.number].state == optuna.trial.TrialState.FAIL
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    assert any(t.user_attrs.get("retry_of") == orphan.number for t in trials)
