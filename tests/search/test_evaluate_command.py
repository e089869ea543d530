"""`xaisearch evaluate`: one configuration's metric table, canonized vs not, equal to the trial's numbers."""

import json

import optuna

from xaisearch.cli import main


def test_evaluate_reproduces_the_trial_and_compares_canonization(tiny_study, write_study, tmp_path, capsys):
    out = tmp_path / "run"
    study_file = write_study(tiny_study)
    assert main(["run", str(study_file), "--out", str(out), "--n-trials", "1"]) == 0
    capsys.readouterr()
    composite = out / "best_composite.json"
    base = ["evaluate", str(study_file), "--composite", str(composite), "--out", str(out), "--json"]
    assert main(base) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"canonizer vgg"}
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[0]
    for metric in ("relevance_mass_accuracy", "pixel_flipping"):
        assert table["canonizer vgg"][metric]["mean"] == trial.user_attrs[f"{metric}.mean"]
    assert main([*base, "--compare-canonization"]) == 0  # the composite file as the table's one row
    records = json.loads(capsys.readouterr().out)["records"]
    assert {r["method"] for r in records} == {"best_composite"}
    by_metric = {r["metric"]: r for r in records}
    for metric in ("relevance_mass_accuracy", "pixel_flipping"):
        assert by_metric[metric]["canonized_mean"] == trial.user_attrs[f"{metric}.mean"]
    # the uncanonized arm explains a different model function for LRP: its maps differ
    rma = by_metric["relevance_mass_accuracy"]
    assert rma["uncanonized_mean"] != rma["canonized_mean"] and rma["better"] != "equal"


def test_evaluate_with_a_missing_composite_is_a_one_line_error(tiny_study, write_study, tmp_path, capsys):
    code = main(["evaluate", str(write_study(tiny_study)), "--composite", str(tmp_path / "nope.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--composite" in err
