"""CLI arguments that name paths, devices, sizes and weights: a bad one is exit 2, one line, nothing left behind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
import torchvision

from tests.unprivileged import as_ordinary_user
from xaisearch.cli import main
from xaisearch.devices import worker_devices
from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig
from xaisearch.models.ref import ModelRef
from xaisearch.search.trial_attributes import CONFIG_ATTR


@pytest.fixture
def finished_study(tmp_path) -> str:
    """A journal storage holding study 'tiny' with one completed trial and its config."""
    journal = str(tmp_path / "optuna.journal")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    config = ExplainerConfig(model=ModelRef(name="mini_vgg", num_classes=4, input_shape=(3, 32, 32)))
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={CONFIG_ATTR: config.model_dump(mode="json")}))
    return journal


def export(storage: str, output: Path) -> int:
    return main(["export", "--study", "tiny", "--storage", storage, "-o", str(output)])


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_export_onto_a_folder_is_refused_and_leaves_nothing(finished_study, tmp_path, capsys):
    target = tmp_path / "adir"
    target.mkdir()
    before = files_under(tmp_path)
    assert export(finished_study, target) == 2
    assert f"-o {str(target)!r}: is a folder; give a file path such as" in one_line(capsys)
    assert files_under(tmp_path) == before and list(target.iterdir()) == []


@pytest.mark.parametrize("under", ["x.json", "deeper/x.json"])
def test_export_under_a_regular_file_is_one_line(finished_study, tmp_path, capsys, under):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    before = files_under(tmp_path)
    assert export(finished_study, blocker / under) == 2
    assert f"{str(blocker)!r} is a file, not a folder" in one_line(capsys)
    assert files_under(tmp_path) == before and blocker.read_text() == "not a folder"


@pytest.fixture
def unwritable_folder(finished_study, tmp_path) -> Iterator[Path]:
    """A read-only folder, and the test run as an ordinary user when root (root ignores modes)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    with as_ordinary_user(tmp_path):
        yield folder


def test_export_into_an_unwritable_folder_is_one_line(finished_study, unwritable_folder, capsys):
    before = files_under(unwritable_folder)
    assert export(finished_study, unwritable_folder / "x.json") == 2
    assert "cannot write the config there" in one_line(capsys)
    assert not (unwritable_folder / "x.json").exists()
    assert files_under(unwritable_folder) == before


def test_export_to_a_file_path_still_writes(finished_study, tmp_path, capsys):
    target = tmp_path / "new" / "best.json"
    assert export(finished_study, target) == 0
    assert ExplainerConfig.from_json(target.read_text()).trial == 0
    assert files_under(target.parent) == [Path("best.json")]


@pytest.mark.parametrize("devices", [",,,", "", "0,,1", "gpu0", "cuda", "cpu;cpu"])
def test_worker_with_a_bad_device_list_exits_2_before_opening_the_storage(tmp_path, capsys, devices):
    journal = tmp_path / "optuna.journal"
    assert main(["worker", "--study", "tiny", "--storage", str(journal), "--devices", devices]) == 2
    err = one_line(capsys)
    assert f"--devices {devices!r}:" in err and "cuda:0,cuda:1" in err and "--devices cpu" in err
    assert not journal.exists()


def test_device_lists_in_the_launchers_form():
    assert worker_devices("cpu, CPU,auto") == ["cpu", "cpu", "auto"]
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available here; use --devices cpu"):
            worker_devices("cuda:0,1")
        return
    count = torch.cuda.device_count()
    assert worker_devices("cuda:0, 0") == ["0", "0"]
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        with pytest.raises(InputError, match=f"there is no GPU {count}; this machine has {count}"):
            worker_devices(f"cuda:{count}")


@pytest.mark.parametrize(
    "size, says",
    [
        (
            "8",
            "--input-size 8: mini_vgg cannot take 8×8 inputs (image_size 8 is too small for 4 pooling blocks); "
            "the smallest that works is 16",
        ),
        ("0", "--input-size 0: give the side of the square input in pixels"),
        ("-3", "--input-size -3: give the side of the square input in pixels"),
    ],
)
def test_canonize_with_an_input_size_the_model_cannot_take(capsys, size, says):
    assert main(["canonize", "mini_vgg", "--input-size", size]) == 2
    assert says in one_line(capsys)
    assert capsys.readouterr().out == ""


def test_canonize_names_the_smallest_size_a_torchvision_model_takes(capsys):
    assert main(["canonize", "squeezenet1_0", "--input-size", "8"]) == 2
    err = one_line(capsys)
    assert "--input-size 8: squeezenet1_0 cannot take 8×8 inputs (Given input size" in err
    assert err.endswith("the smallest that works is 21")
    model = torchvision.models.squeezenet1_0().eval()  # re-derived: 21 is the first side that runs
    with torch.no_grad():
        model(torch.zeros(1, 3, 21, 21))
        with pytest.raises(RuntimeError, match="Output size is too small"):
            model(torch.zeros(1, 3, 20, 20))


def test_canonize_takes_the_smallest_size_mini_vgg_takes(capsys):
    assert main(["canonize", "mini_vgg", "--input-size", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bn_folded"] == 4 and report["max_rel_diff"] <= 1e-5


def test_a_study_with_a_bad_weights_file_exits_2_with_one_line(tiny_study, write_study, tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save([1, 2, 3], weights)
    tiny_study["model"]["weights"] = str(weights)
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 2
    assert f"error: model.weights: {str(weights)!r} holds a list, not a state dict" in one_line(capsys)
    assert not out.exists()


def test_a_study_naming_torchvision_weights_for_mini_vgg_exits_2(tiny_study, write_study, tmp_path, capsys):
    tiny_study["model"]["weights"] = "IMAGENET1K_V1"
    out = tmp_path / "run"
    assert main(["run", str(write_study(tiny_study)), "--out", str(out)]) == 2
    assert one_line(capsys).startswith("error: model.weights: 'IMAGENET1K_V1' is a torchvision weights name")
    assert not out.exists()
