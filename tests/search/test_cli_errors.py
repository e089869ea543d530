"""Bad study files: exit code 2, one line on stderr that names the field, nothing written."""

import subprocess
import sys

import pytest

from xaisearch.cli import main


def mutate(study, path, value):
    *parents, last = path
    node = study
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return study


@pytest.mark.parametrize(
    "path, value, field",
    [
        (("name",), KeyError, "field 'name'"),
        (("n_trials",), "many", "field 'n_trials'"),
        (("search_space", "groups", "low", "rules"), ["gamma", "lrp-zero"], "field 'search_space.groups.low.rules[1]'"),
        (("search_space", "ranges"), {"epsilon": {"low": -0.1, "high": 1.0, "log": False}}, "ranges.epsilon.low"),
        (("metrics",), [{"name": "relevance_mass_accuracy"}, {"name": "accuracy_of_vibes"}], "field 'metrics[1]'"),
        (("model", "num_classes"), -3, "field 'model.num_classes'"),
    ],
)
def test_bad_study_files_exit_2_with_one_line_naming_the_field(
    tiny_study, write_study, tmp_path, capsys, path, value, field
):
    study_file = write_study(mutate(tiny_study, path, value))
    out = tmp_path / "run"
    code = main(["run", str(study_file), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and field in err and str(study_file) in err
    assert not out.exists()


def test_missing_file_and_broken_yaml(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert main(["run", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_console_script_exit_code_is_2(tiny_study, write_study):
    tiny_study["search_space"]["groups"]["low"]["rules"] = ["nope"]
    result = subprocess.run(
        [sys.executable, "-m", "xaisearch.cli", "run", str(write_study(tiny_study))], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "search_space.groups.low.rules[0]" in result.stderr


def test_help_does_not_import_torch():
    code = "import sys; from xaisearch.cli import main; main(['--help']); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().endswith("False"), result.stdout
