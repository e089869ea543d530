"""A composite config with a mistake, or made for another model, is refused in one line naming the file and field."""

import copy
import json

import pytest
import torch
import yaml

import xaisearch
from tests.search.conftest import TINY_STUDY
from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig, load_config
from xaisearch.explain.groups import depth_groups
from xaisearch.models.mini import mini_vgg
from xaisearch.models.ref import ModelRef

MODEL = {"name": "mini_vgg", "num_classes": 4, "input_shape": [3, 32, 32]}


def composite(**changes) -> dict:
    """A valid composite for the tiny study's mini VGG: every layer epsilon, then ``changes``."""
    groups = depth_groups(mini_vgg(num_classes=4, image_size=32), (3, 32, 32))
    data = {
        "format": "xaisearch.composite/1",
        "model": dict(MODEL),
        "canonizer": "vgg",
        "groups": [{"name": g, "layers": layers, "rule": "epsilon", "params": {}} for g, layers in groups.items()],
    }
    return data | changes


def write(tmp_path, data, name="composite.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def refusal(source) -> str:
    with pytest.raises(InputError) as caught:
        load_config(source)
    message = str(caught.value)
    assert "\n" not in message and "validation error" not in message
    return message


def test_a_valid_composite_loads_with_defaults_filled_in(tmp_path):
    config, folder = load_config(write(tmp_path, composite()))
    assert folder == tmp_path and config.groups[0].params == {"epsilon": 1e-6}


def test_a_bad_rule_parameter_names_the_file_the_field_with_its_index_and_the_rule(tmp_path):
    data = composite()
    data["groups"][1]["params"] = {"epsilon": -1}
    path = write(tmp_path, data)
    assert refusal(path) == f"{path}: field 'groups[1].params': rule 'epsilon': epsilon must be a number > 0, got -1"


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"format": "xaisearch.composite/2"}, "format", "'xaisearch.composite/2' is not a format this xaisearch reads"),
        ({"canonizer": "vggg"}, "canonizer", "unknown canonizer 'vggg'"),
        ({"method": "smoothgrads"}, "method", "unknown method 'smoothgrads'; choose one of ['lrp', 'gradient',"),
        ({"model": MODEL | {"num_classes": 0}}, "model.num_classes", "greater than 0"),
        ({"model": MODEL | {"input_shape": "3x32x32"}}, "model.input_shape", "valid array"),
        ({"groups": [{"name": "low", "layers": ["features.0"], "rule": "lrp0"}]}, "groups[0].rule", "unknown rule"),
        (
            {"groups": [{"name": "g", "layers": ["a"], "rule": "epsilon", "params": {"epsilon": True}}]},
            "groups[0].params",
            "got True",
        ),
        ({"first_layer": {"rule": "zbox", "params": {"low": 1.0, "high": 0.0}}}, "first_layer.params", "low < high"),
        ({"trial": "three"}, "trial", "valid integer"),
        ({"grups": []}, "grups", "not a known field"),
    ],
)
def test_every_invalid_field_is_one_line_naming_it(tmp_path, change, field, words):
    path = write(tmp_path, composite(**change))
    message = refusal(path)
    assert message.startswith(f"{path}: field '{field}': ") and words in message


def test_a_missing_model_section_is_named(tmp_path):
    data = composite()
    del data["model"]
    assert refusal(write(tmp_path, data)).endswith("field 'model': is required but missing")


@pytest.mark.parametrize(
    "content, words",
    [
        (b'{"format": "xaisearch.composite/1", ', "not valid JSON at line 1 column 37"),
        (b"[1, 2]", "expected a JSON object with the composite's fields"),
        (b'"best"', "got a string"),
        (b'{"model": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 14)"),
    ],
)
def test_a_file_that_is_not_a_json_object_is_one_line(tmp_path, content, words):
    path = tmp_path / "composite.json"
    path.write_bytes(content)
    message = refusal(path)
    assert message.startswith(f"{path}: ") and words in message


def test_a_missing_file_or_a_folder_is_one_line(tmp_path):
    assert (
        refusal(tmp_path / "nope.json")
        == f"{tmp_path / 'nope.json'}: composite config not found; export one with 'xaisearch export'"
    )
    assert "is a folder" in refusal(tmp_path)


def test_a_dict_and_the_public_entry_points_give_the_same_one_line_errors(tmp_path):
    data = composite(canonizer="nope")
    assert refusal(data).startswith("composite config: field 'canonizer': unknown canonizer 'nope'")
    with pytest.raises(InputError, match="field 'canonizer'"):
        xaisearch.composite_from_config(write(tmp_path, data), mini_vgg(num_classes=4, image_size=32))
    with pytest.raises(InputError, match="field 'canonizer'"):
        ExplainerConfig.from_json(json.dumps(data))


def test_model_differences_and_missing_layers_say_what_differs():
    config = ExplainerConfig.model_validate(composite(model=MODEL | {"num_classes": 10}))
    study_model = ModelRef(name="mini_vgg", num_classes=4, input_shape=(3, 48, 48))
    assert config.model_differences(study_model) == [
        "num_classes 10 (the study's model has 4)",
        "input_shape [3, 32, 32] (the study's model takes [3, 48, 48])",
    ]
    assert (
        config.model_differences(study_model.model_copy(update={"num_classes": 10, "input_shape": (3, 32, 32)})) == []
    )
    names = {name for name, _ in mini_vgg(num_classes=4, image_size=32).named_modules()}
    assert config.missing_layers(names) == []
    assert config.missing_layers(names - {"features.0", "classifier.2"}) == ["features.0", "classifier.2"]


@pytest.fixture
def study_file(tmp_path):
    """The tiny study on a saved random mini VGG (no training)."""
    torch.manual_seed(0)
    weights = tmp_path / "weights.pt"
    torch.save(mini_vgg(num_classes=4, image_size=32).state_dict(), weights)
    study = copy.deepcopy(TINY_STUDY)
    study["model"] = MODEL | {"weights": str(weights)}
    study["data"] = {"n_eval": 8, "batch_size": 8}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def evaluate(study_file, composite_file, capsys) -> tuple[int, str]:
    code = main(["evaluate", str(study_file), "--composite", str(composite_file), "--out", str(study_file.parent)])
    err = capsys.readouterr().err
    return code, err


def test_evaluate_refuses_an_invalid_composite_in_one_line(study_file, tmp_path, capsys):
    data = composite()
    data["groups"][0]["params"] = {"epsilon": -1}
    path = write(tmp_path, data)
    code, err = evaluate(study_file, path, capsys)
    assert code == 2 and err.count("\n") == 1
    expected = f"--composite {path}: field 'groups[0].params': rule 'epsilon': epsilon must be a number > 0, got -1"
    assert err == f"error: {expected}\n"


def test_evaluate_refuses_a_composite_made_for_a_ten_class_model(study_file, tmp_path, capsys):
    path = write(tmp_path, composite(model=MODEL | {"num_classes": 10}))
    code, err = evaluate(study_file, path, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "made for another model" in err and "num_classes 10 (the study's model has 4)" in err


def test_evaluate_refuses_a_composite_naming_layers_the_model_lacks(study_file, tmp_path, capsys):
    data = composite()
    data["groups"][0]["layers"] = ["features.0", "blocks.3.conv"]
    code, err = evaluate(study_file, write(tmp_path, data), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "made for another model" in err and "['blocks.3.conv']" in err


def test_evaluate_scores_a_composite_that_fits(study_file, tmp_path, capsys):
    path = write(tmp_path, composite())
    assert main(["evaluate", str(study_file), "--composite", str(path), "--out", str(tmp_path), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table["canonizer vgg"]) == {"relevance_mass_accuracy", "pixel_flipping"}
