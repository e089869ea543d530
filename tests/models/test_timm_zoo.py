"""timm's models as ``timm/<name>``: built from a study's ModelRef, canonized through the CLI, their
pretrained weights read from the local cache only, and every mistake one line. Nothing is ever
downloaded: ``HF_HUB_OFFLINE=1`` and ``HF_HOME`` in a temporary folder for every test."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from tests.canonize.test_guard import BrokenFold, random_bn
from tests.search.conftest import TINY_STUDY
from xaisearch.canonize.guard import check_function_kept
from xaisearch.canonize.registry import canonizer_name_for, get_canonizer
from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.models.ref import ModelRef
from xaisearch.models.zoo import build_model, check_model_name

timm = pytest.importorskip("timm")

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a Hub commit hash, as the cache names its folders


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "hf"


def ref(name: str = "timm/resnet18", num_classes: int = 10, weights: str | None = None) -> ModelRef:
    return ModelRef(name=name, num_classes=num_classes, input_shape=(3, 64, 64), weights=weights)


def one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_study_model_ref_builds_the_timm_architecture_and_auto_canonizes_it():
    model = build_model(ref())
    assert type(model) is timm.models.resnet.ResNet and not model.training
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert canonizer_name_for(model) == "auto"  # timm's ResNet is not torchvision's: traced, not "resnet"
    convnext = build_model(ref("timm/convnext_atto"))
    assert canonizer_name_for(convnext) == "none"  # LayerNorm only: nothing to fold


def test_canonize_timm_resnet18_through_the_cli(capsys):
    assert main(["canonize", "timm/resnet18", "--input-size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "timm/resnet18" and report["canonizer"] == "auto"
    assert report["bn_total"] == report["bn_folded"] == 20 and report["unfolded"] == []
    assert report["max_rel_diff"] <= 1e-5 and report["restored_exactly"] is True
    assert report["guard"]["passed"] is True and report["guard"]["dtype"] == "float64"


def test_the_guard_names_a_timm_batchnorm_with_its_activation_as_one_module():
    from timm.layers import BatchNormAct2d

    model = random_bn(  # timm's Conv → BatchNormAct2d (BN, then SiLU inside) blocks, as in its EfficientNets
        torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
            BatchNormAct2d(8, act_layer=torch.nn.SiLU),
            torch.nn.Conv2d(8, 8, 3, padding=1, bias=False),
            BatchNormAct2d(8, act_layer=torch.nn.SiLU),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 3),
        )
    )
    kept = check_function_kept(model, get_canonizer("auto"), torch.randn(2, 3, 16, 16))
    assert kept.passed()
    result = check_function_kept(model, BrokenFold("auto", "2"), torch.randn(2, 3, 16, 16))
    assert not result.passed() and result.diverging == "3 (BatchNormAct2d, after 2)"  # not its SiLU, not conv 2


def test_an_unknown_timm_name_suggests_close_ones(capsys):
    err = one_line(["canonize", "timm/resnet18x"], capsys)
    assert err == (
        "error: model: timm has no model 'resnet18x'; did you mean ['timm/resnet18', 'timm/resnet18d', "
        "'timm/skresnet18', 'timm/seresnet18', 'timm/resnetv2_18']?"
    )
    with pytest.raises(InputError, match=r"^model.name: timm has no weights tag 'nope' for resnet18; use one of \["):
        check_model_name("timm/resnet18.nope")
    with pytest.raises(InputError, match="or timm/<name> for a timm model$"):
        check_model_name("resnet5O")


def test_a_study_with_a_timm_model_validates(tmp_path, capsys):
    weights = tmp_path / "resnet18.pt"
    torch.save(timm.create_model("resnet18", num_classes=4).state_dict(), weights)
    study = copy.deepcopy(TINY_STUDY)
    del study["canonizer"]
    study["model"].update(name="timm/resnet18", weights=str(weights))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["validate", str(path)]) == 0
    assert "valid; canonizer auto; layer groups low (" in capsys.readouterr().out
    study["model"]["name"] = "timm/resnet18q"
    path.write_text(yaml.safe_dump(study))
    assert "error: model.name: timm has no model 'resnet18q'" in one_line(["validate", str(path)], capsys)


def test_pretrained_weights_missing_offline_are_one_line(offline_hub, capsys):
    with pytest.raises(InputError) as missing:
        build_model(ref(num_classes=1000, weights="pretrained"))
    message = str(missing.value)
    assert "\n" not in message
    assert message.startswith(
        "model.weights: the pretrained weights of timm/resnet18 (timm/resnet18.a1_in1k) are not in the local cache "
        f'({offline_hub / "hub"}) and HF_HUB_OFFLINE is set; run python -c "import timm; '
        "timm.create_model('resnet18', pretrained=True)\" on a machine online"
    )
    err = one_line(["canonize", "timm/resnet18", "--weights", "pretrained", "--input-size", "32"], capsys)
    assert err.startswith("error: --weights: the pretrained weights of timm/resnet18")


def test_pretrained_weights_that_do_not_fit_are_one_line():
    with pytest.raises(
        InputError, match="^model.num_classes: timm/resnet18 with pretrained weights has 1000 classes, "
    ):
        build_model(ref(num_classes=10, weights="pretrained"))
    with pytest.raises(InputError, match="^model.weights: timm has no pretrained weights for timm/vovnet39a; "):
        build_model(ref("timm/vovnet39a", num_classes=1000, weights="pretrained"))
    with pytest.raises(FileNotFoundError, match="give a checkpoint file or 'pretrained'"):
        build_model(ref(weights="IMAGENET1K_V1"))  # a torchvision weights name means nothing to timm


def cache_in_hub(hub: Path, repository: str, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` where ``huggingface_hub`` caches ``repository``'s ``model.safetensors``."""
    from safetensors.torch import save_file

    folder = hub / f"models--{repository.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(SNAPSHOT)
    file = folder / "snapshots" / SNAPSHOT / "model.safetensors"
    file.parent.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file


def test_pretrained_weights_load_from_the_local_cache_without_the_hub(offline_hub, monkeypatch):
    import huggingface_hub

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Hub was asked for a file the cache holds")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_hub)
    saved = timm.create_model("resnet18").state_dict()
    cache_in_hub(offline_hub / "hub", "timm/resnet18.a1_in1k", saved)
    model = build_model(ref(num_classes=1000, weights="pretrained"))
    assert not model.training and model.state_dict().keys() == saved.keys()
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_a_checkpoint_file_loads_into_a_timm_model(tmp_path):
    saved = timm.create_model("resnet18", num_classes=10).state_dict()
    torch.save(saved, tmp_path / "resnet18.pt")
    model = build_model(ref(weights=str(tmp_path / "resnet18.pt")))
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
    torch.save(timm.create_model("resnet18", num_classes=5).state_dict(), tmp_path / "other.pt")
    with pytest.raises(InputError, match="holds timm/resnet18 weights of other sizes"):
        build_model(ref(weights=str(tmp_path / "other.pt")))


def test_without_timm_a_timm_model_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(InputError) as missing:
        check_model_name("timm/resnet18")
    assert str(missing.value) == (
        'model.name: timm/resnet18 is a timm model, and timm is not installed; pip install "xaisearch[timm]"'
    )


def test_validating_a_timm_study_file_imports_no_timm(tmp_path):
    study = copy.deepcopy(TINY_STUDY)
    study["model"]["name"] = "timm/resnet18"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    script = textwrap.dedent(
        f"""
        import sys, yaml
        from xaisearch.spec import StudySpec, load_spec
        StudySpec.model_validate(yaml.safe_load(open({str(path)!r})))
        fields = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "timm"}})
        load_spec({str(path)!r})
        print(fields, "timm" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[] False"
