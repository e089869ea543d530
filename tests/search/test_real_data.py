"""Studies on real datasets, run on trees and checkpoints the tests write (no data is downloaded)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.data.fake_imagenet import make_tree
from tests.data.fake_voc import write_voc_tree
from xaisearch.cli import main
from xaisearch.models.mini import mini_vgg
from xaisearch.spec import DataSpec


def checkpoint(tmp_path, num_classes: int) -> str:
    """Random weights of a 32 px mini VGG, saved as a user's checkpoint would be."""
    torch.manual_seed(0)
    path = tmp_path / f"mini_vgg_{num_classes}.pt"
    torch.save({"model_state": mini_vgg(num_classes=num_classes, image_size=32).state_dict()}, path)
    return str(path)


def real_study(tiny_study, data: dict, weights: str, num_classes: int) -> dict:
    tiny_study["name"] = f"tiny_{data['name']}"
    tiny_study["model"] = {
        "name": "mini_vgg",
        "num_classes": num_classes,
        "input_shape": [3, 32, 32],
        "weights": weights,
    }
    tiny_study["data"] = {**data, "n_eval": 2, "n_validation": 2, "batch_size": 2}
    return tiny_study


@pytest.mark.parametrize("masks", ["segmentation", "boxes"])
def test_a_study_on_a_voc_tree_runs_and_exports(tiny_study, write_study, tmp_path, monkeypatch, masks):
    write_voc_tree(tmp_path / "voc")
    monkeypatch.setenv("XS_TEST_DATA", str(tmp_path))  # the study file names no machine path
    data = {"name": "voc", "root": "$XS_TEST_DATA/voc", "masks": masks}
    study = write_study(real_study(tiny_study, data, checkpoint(tmp_path, 20), 20))
    out = tmp_path / "run"
    assert main(["run", str(study), "--out", str(out)]) == 0
    config = json.loads((out / "best_composite.json").read_text())
    first = config["first_layer"]
    if first is not None and first["rule"] == "zbox":  # per-channel bounds of the ImageNet normalisation
        assert len(first["params"]["low"]) == 3 and first["params"]["low"][0] < -2


def test_a_tree_too_small_for_the_validation_set_fails_before_any_trial(tiny_study, write_study, tmp_path, capsys):
    write_voc_tree(tmp_path / "voc")
    study = real_study(tiny_study, {"name": "voc", "root": str(tmp_path / "voc")}, checkpoint(tmp_path, 20), 20)
    study["data"]["n_eval"] = 1000  # more samples than the tree holds: all are search images
    assert main(["run", str(write_study(study)), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data.n_validation" in err and "none is left for validation" in err
    assert not (tmp_path / "run" / "optuna.journal").exists()


def test_a_study_on_an_ilsvrc_tree_runs(tiny_study, write_study, tmp_path):
    root = make_tree(tmp_path / "ilsvrc")
    data = {"name": "imagenet", "root": str(root), "split": "train", "preprocessing": "resize_crop"}
    study = write_study(real_study(tiny_study, data, checkpoint(tmp_path, 7), 7))
    assert main(["run", str(study), "--out", str(tmp_path / "run")]) == 0


def test_real_data_problems_are_one_line_input_errors(tiny_study, write_study, tmp_path, capsys):
    weights = checkpoint(tmp_path, 20)
    missing = write_study(real_study(tiny_study, {"name": "voc", "root": str(tmp_path / "nowhere")}, weights, 20))
    assert main(["run", str(missing), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.root" in err and "nowhere" in err
    untrained = real_study(tiny_study, {"name": "voc", "root": str(write_voc_tree(tmp_path / "voc"))}, weights, 20)
    del untrained["model"]["weights"]
    assert main(["run", str(write_study(untrained)), "--out", str(tmp_path / "b")]) == 2
    assert "model.weights" in capsys.readouterr().err
    for bad, field in (
        ({"name": "voc"}, "root"),
        ({"name": "shapes", "root": "x"}, "root"),
        ({"name": "voc", "root": "x", "input_low": -1.0}, "both be numbers or both be lists"),
        ({"input_low": [], "input_high": []}, "same number of values"),
        ({"name": "imagenet", "root": "x", "masks": "boxes"}, "remove masks"),
    ):
        with pytest.raises(ValueError, match=field):
            DataSpec(**bad)
    two_channels = real_study(tiny_study, {"name": "voc", "root": "x"}, weights, 20)
    two_channels["data"] |= {"input_low": [0.0, 0.0], "input_high": [1.0, 1.0]}
    assert main(["run", str(write_study(two_channels)), "--out", str(tmp_path / "c")]) == 2
    assert "2 values for 3 input channels" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_an_unreadable_image_is_a_one_line_error_and_leaves_nothing(tiny_study, write_study, tmp_path, capsys):
    root = write_voc_tree(tmp_path / "voc")
    for jpeg in (root / "VOCdevkit" / "VOC2012" / "JPEGImages").iterdir():
        jpeg.write_bytes(b"not a jpeg")
    study = write_study(real_study(tiny_study, {"name": "voc", "root": str(root)}, checkpoint(tmp_path, 20), 20))
    assert main(["run", str(study), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: data:")
    assert not (tmp_path / "run").exists()


def test_the_voc_example_study_is_valid():
    from xaisearch.spec import load_spec

    spec = load_spec("studies/voc_vgg16.yaml")
    assert spec.data.name == "voc" and spec.data.root == "$VOC_ROOT"
    assert isinstance(spec.data.input_low, list) and len(spec.data.input_low) == 3


@pytest.mark.parametrize("study_file", ["studies/demo.yaml", "studies/voc_vgg16.yaml"])
def test_a_stored_spec_validates_again_with_the_same_hash(study_file):
    """Workers rebuild the spec from the study's user attributes: every default is spelled out there."""
    from xaisearch.spec import StudySpec, load_spec

    spec = load_spec(study_file)
    stored = spec.stored_form()
    again = StudySpec.model_validate(stored)
    assert again == spec and again.content_hash() == spec.content_hash()
    assert ("root" in stored["data"]) == (spec.data.name != "shapes")  # older workers read shapes studies


def test_a_stored_spec_this_version_cannot_read_stops_workers_with_exit_2(tiny_study, tmp_path, capsys):
    """Version skew between the coordinator and a worker: one line, exit 2 (the launcher does not restart it)."""
    import optuna

    from xaisearch.search.study import SPEC_ATTR
    from xaisearch.service.storage import open_storage

    url = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="skewed", storage=open_storage(url))
    study.set_user_attr(SPEC_ATTR, {**tiny_study, "data": {"name": "shapes", "root": "somewhere"}})
    assert main(["worker", "--study", "skewed", "--storage", url, "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stored spec" in err and "data" in err
