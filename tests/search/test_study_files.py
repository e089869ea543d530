"""Every study file the repo ships is valid, and a real-data study run without its data says what is
missing (the folder or the weights file) in one line, exit 2, before anything is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.data.fake_voc import write_voc_tree
from xaisearch.cli.app import main
from xaisearch.spec import load_spec

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))
REAL_DATA = [path for path in STUDIES if load_spec(path).data.real]


def root_variable(path: Path) -> str:
    """The environment variable a shipped real-data study reads its data root from."""
    root = load_spec(path).data.root
    assert root is not None
    found = re.findall(r"\$\{?(\w+)", root)
    assert found, f"{path.name}: data.root {root!r} is a machine path; use a $VARIABLE"
    return found[0]


def test_the_folder_holds_the_paper_studies():
    names = {path.stem for path in STUDIES}
    paper = {"imagenet_vgg16", "imagenet_resnet18", "imagenet_efficientnet_b0", "imagenet_densenet121", "voc_vgg16"}
    assert paper <= names
    assert {path.stem for path in REAL_DATA} >= paper


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert f"{path}: valid" in capsys.readouterr().out


@pytest.mark.parametrize("path", REAL_DATA, ids=[p.stem for p in REAL_DATA])
def test_a_real_data_study_without_its_data_names_the_missing_folder(path, tmp_path, monkeypatch, capsys):
    variable = root_variable(path)
    out = tmp_path / "run"
    monkeypatch.delenv(variable, raising=False)
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"uses {variable}, which is not set" in err, err

    monkeypatch.setenv(variable, str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    holder = load_spec(path).data.entry.holder
    assert err.count("\n") == 0 and f"{tmp_path / 'empty'} holds no {holder}" in err, err
    assert not out.exists()


def test_a_voc_study_with_its_data_but_not_its_weights_names_the_weights_file(tmp_path, monkeypatch, capsys):
    root = tmp_path / "voc"
    write_voc_tree(root)
    monkeypatch.setenv("VOC_ROOT", str(root))
    monkeypatch.chdir(tmp_path)  # the study's relative checkpoint path resolves here, where it is not
    study = Path(__file__).resolve().parents[2] / "studies" / "voc_vgg16.yaml"
    assert main(["run", str(study), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model.weights:") and "checkpoints/voc_vgg16_bn.pt" in err, err
    assert not (tmp_path / "run").exists()
