"""Mistakes that pass field validation are refused before anything is trained or written.

Each case is a study file (or flag) a new user tried: exit 2, one line naming the field and the
fix, and no run folder, checkpoint or journal left behind.
"""

from __future__ import annotations

import os

import pytest

from xaisearch.cli import main


def set_at(study: dict, path: tuple, value: object) -> dict:
    *parents, last = path
    node = study
    for key in parents:
        node = node[key]
    node[last] = value
    return study


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("canonizer",), "relation_network", "canonizer: canonizer 'relation_network' needs a RelationNetwork"),
        (("canonizer",), "densenet.thresh_seq", "needs a torchvision DenseNet"),
        (("metrics", 1, "params"), {"steps": -1}, "field 'metrics[1]': metric 'pixel_flipping': parameter steps"),
        (("metrics", 1, "params"), {"steps": True}, "should be a valid integer (got True)"),
        (("model", "num_classes"), 3, "field 'model.num_classes': 3 outputs, but data 'shapes' has 4 labels"),
        (("model", "input_shape"), [3, 4, 4], "model: mini_vgg cannot be built for input_shape [3, 4, 4]"),
        (("model", "input_shape"), [1, 48, 48], "field 'model.input_shape': data 'shapes' has RGB images"),
        (("data", "n_eval"), 100_000_000, "field 'data.n_eval': 100000000 images of 3x32x32 need about"),
        (("name",), "..", "'..' cannot name a run folder"),
        (("n_trials",), True, "field 'n_trials': should be a valid integer (got True)"),
        (("search_space", "groups", "extra"), {"rules": ["gamma"]}, "search_space.groups.extra: this model has no"),
        (("sampler",), {"name": "grid"}, "sampler.grid: give values for"),
    ],
)
def test_a_study_that_does_not_fit_together_is_refused_before_training(
    tiny_study, write_study, tmp_path, capsys, path, value, expected
):
    out = tmp_path / "run"
    err = refused(["run", str(write_study(set_at(tiny_study, path, value))), "--out", str(out)], capsys)
    assert expected in err
    assert not out.exists()


def test_a_misspelt_field_says_what_was_meant(tiny_study, write_study, tmp_path, capsys):
    tiny_study["n_trial"] = tiny_study.pop("n_trials")
    err = refused(["run", str(write_study(tiny_study)), "--out", str(tmp_path / "run")], capsys)
    assert "field 'n_trial': is not a known field; did you mean 'n_trials'?" in err


def test_a_key_given_twice_and_a_file_that_is_not_utf8_are_refused(tmp_path, capsys):
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nn_trials: 3\nn_trials: 4\n")
    assert "key 'n_trials' is given twice" in refused(["run", str(twice)], capsys)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8 text" in refused(["run", str(latin)], capsys)


def test_a_storage_that_cannot_work_is_refused_before_training(tiny_study, write_study, tmp_path, capsys):
    out = tmp_path / "run"
    err = refused(["run", str(write_study(tiny_study)), "--out", str(out), "--storage", "mysql://x"], capsys)
    assert "mysql://x" in err
    assert not out.exists()


def test_an_out_folder_that_is_a_file_or_read_only_is_refused(tiny_study, write_study, tmp_path, capsys):
    study = str(write_study(tiny_study))
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert "--out" in refused(["run", study, "--out", str(a_file)], capsys)
    assert "--out" in refused(["run", study, "--out", str(a_file / "below")], capsys)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere: a read-only folder cannot be made here
        return
    assert "is not writable" in refused(["run", study, "--out", str(locked)], capsys)
