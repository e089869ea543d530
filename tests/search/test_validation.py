"""The winner is chosen on held-out images: planted search-set winners lose, evidence is exported."""

import json

import optuna
import torch

from xaisearch.cli import main
from xaisearch.explain.config import ExplainerConfig
from xaisearch.search.trial_attributes import CONFIG_ATTR
from xaisearch.search.validation import ATTR_PREFIX, HeldoutScorer
from xaisearch.search.workbench import evaluation_batches, validation_batches
from xaisearch.spec import parse_spec


def journal(out):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))


def small_search_study(tiny_study, stability=False):
    """8 search images, 256 held-out ones: the search set's best is mostly selection noise."""
    tiny_study["n_trials"] = 4
    tiny_study["data"] = {"n_eval": 8, "n_validation": 256, "batch_size": 64}
    tiny_study["metrics"] = [
        {"name": "relevance_mass_accuracy", "weight": 1.0},
        {"name": "pixel_flipping", "weight": 1.0, "params": {"steps": 4}},
    ]
    tiny_study["validation"] = {"top_k": 3, "stability": stability}
    return tiny_study


def plant_search_winner(out, name="tiny"):
    """A trial recorded as best on the search set whose config is plain gradient (a poor explainer
    of this model on every image): only held-out images can unmask it."""
    study = optuna.load_study(study_name=name, storage=journal(out))
    model = ExplainerConfig.model_validate(study.trials[0].user_attrs[CONFIG_ATTR]).model
    gradient = ExplainerConfig(model=model, method="gradient")
    template = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            params=template.params,
            distributions=template.distributions,
            value=max(t.value for t in study.trials) + 1.0,
            user_attrs={CONFIG_ATTR: gradient.model_dump(mode="json")},
        )
    )
    return len(study.trials) - 1


def test_a_planted_search_set_winner_loses_on_held_out_images(tiny_study, write_study, tmp_path, capsys):
    study_file = write_study(small_search_study(tiny_study))
    out = tmp_path / "run"
    assert main(["run", str(study_file), "--out", str(out)]) == 0
    planted = plant_search_winner(out)
    capsys.readouterr()

    assert main(["run", str(study_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "winner, chosen on 256 held-out images" in printed
    assert f"the search set's best, trial #{planted}" in printed and "the winner differs" in printed
    exported = json.loads((out / "best_composite.json").read_text())
    assert exported["trial"] != planted
    evidence = exported["validation"]
    assert evidence["search_best"] == planted and evidence["chosen_on"] == "validation"
    heldout = evidence["heldout"]
    assert heldout["n_images"] == 256 and set(heldout["scores"]) == {"relevance_mass_accuracy", "pixel_flipping"}
    assert (
        heldout["search_objective"]
        == optuna.load_study(study_name="tiny", storage=journal(out)).trials[exported["trial"]].value
    )
    runner_up = evidence["significance"]["vs_runner_up"]
    assert runner_up["test"] == "wilcoxon" and runner_up["n_pairs"] == 256 and 0 <= runner_up["p_value"] <= 1
    assert evidence["significance"]["vs_best_seed"]["trial"] is not None
    assert evidence["stability"] is None  # turned off in this study file
    config = ExplainerConfig.from_json((out / "best_composite.json").read_text())
    assert config.validation is not None and config.validation.search_best == planted

    # status shows the held-out column from the stored scores, computing nothing
    assert main(["status", "--study", "tiny", "--storage", str(out / "optuna.journal")]) == 0
    status = capsys.readouterr().out
    assert "held-out (256 img)" in status and f"trial #{exported['trial']}" in status


def test_validation_scores_are_stored_and_not_computed_again(tiny_study, write_study, tmp_path, capsys, monkeypatch):
    study_file = write_study(small_search_study(tiny_study, stability=True))
    out = tmp_path / "run"
    assert main(["run", str(study_file), "--out", str(out)]) == 0
    first = json.loads((out / "best_composite.json").read_text())["validation"]
    study = optuna.load_study(study_name="tiny", storage=journal(out))
    stored = [key for key in study.user_attrs if key.startswith(ATTR_PREFIX + ".")]
    # the top 3 trials, the best seed when it is not among them, and plain gradient
    assert len(stored) in (4, 5) and any(key.endswith(".gradient") for key in stored)
    stability = first["stability"]
    assert stability["n_candidates"] >= 3 and stability["perturbations"]
    assert 0 <= stability["winner_kept"] <= 1 and -1 <= stability["kendall_tau"] <= 1
    assert {p["name"] for p in stability["perturbations"]} >= {"baseline=black", "steps*2", "pooling=sum_abs"}

    calls = []
    original = HeldoutScorer.score
    monkeypatch.setattr(HeldoutScorer, "score", lambda self, *a: calls.append(a) or original(self, *a))
    assert (
        main(["export", "--study", "tiny", "--storage", str(out / "optuna.journal"), "-o", str(tmp_path / "b.json")])
        == 0
    )
    assert calls == []
    assert json.loads((tmp_path / "b.json").read_text())["validation"] == first
    # a chosen trial outside the top 3 is validated on request, and only it
    assert (
        main(
            [
                "export",
                "--study",
                "tiny",
                "--storage",
                str(out / "optuna.journal"),
                "-o",
                str(tmp_path / "c.json"),
                "--trial",
                "0",
            ]
        )
        == 0
    )
    chosen = json.loads((tmp_path / "c.json").read_text())
    assert chosen["trial"] == 0 and chosen["validation"]["heldout"]["n_images"] == 256
    assert len(calls) <= 1


def test_held_out_images_are_disjoint_from_the_search_set(tiny_study):
    spec = parse_spec(small_search_study(tiny_study))
    search = torch.cat([b.x for b in evaluation_batches(spec.data, 32, torch.device("cpu"))])
    heldout = torch.cat([b.x for b in validation_batches(spec.data, 32, torch.device("cpu"))])
    assert len(search) == 8 and len(heldout) == 256
    distances = (search.flatten(1)[:, None] - heldout.flatten(1)[None]).abs().amax(-1)
    assert distances.min() > 0.1


def test_an_export_without_validation_still_loads():
    config = ExplainerConfig.from_json(
        json.dumps({"model": {"name": "mini_vgg", "num_classes": 4, "input_shape": [3, 32, 32]}})
    )
    assert config.validation is None
