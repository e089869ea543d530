"""Property: any mutation of studies/demo.yaml validates, or is refused in one line with exit 2.

Dropped keys, wrong types, out-of-range numbers, unknown names and random bytes, each fed to
``xaisearch validate`` (the study file's checks and the preflight on the untrained model, which
``run`` does before it trains or writes anything). Nothing may be written meanwhile.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaisearch.cli import main

DEMO = yaml.safe_load(Path("studies/demo.yaml").read_text())


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into the demo's data (mapping keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


PATHS = paths(DEMO)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
NUMBERS = st.sampled_from([-1, 0, -0.5, 1e-300, 1e300, 10**18, math.inf, -math.inf, math.nan, 2**63])
NAMES = st.sampled_from(["", "lrp-0", "epsilonn", "../..", "a/b", "pixel_flipping", "tpe", "voc", "zbox", "é"])


def mutate(data: dict, path: tuple, how: str, value: Any) -> dict:
    mutated = copy.deepcopy(data)
    parent: Any = mutated
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if how == "drop":
        del parent[key]
    elif how == "unknown_key" and isinstance(parent, dict):
        parent[f"{key}_x"] = value
    else:
        parent[key] = value
    return mutated


def assert_one_line_or_valid(tmp_path: Path, capsys: Any, study: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["validate", str(study)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(
    path=st.sampled_from(PATHS),
    how=st.sampled_from(["drop", "value", "number", "name", "unknown_key"]),
    value=ANY_VALUE,
    number=NUMBERS,
    name=NAMES,
)
def test_a_mutated_study_validates_or_is_refused_in_one_line(tmp_path, capsys, path, how, value, number, name):
    chosen = {"number": number, "name": name}.get(how, value)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(mutate(DEMO, path, how, chosen), allow_unicode=True))
    assert_one_line_or_valid(tmp_path, capsys, study)


@SETTINGS
@given(data=st.binary(max_size=200), at=st.integers(min_value=0, max_value=2000))
def test_random_bytes_in_a_study_file_are_refused_in_one_line(tmp_path, capsys, data, at):
    text = Path("studies/demo.yaml").read_bytes()
    study = tmp_path / "study.yaml"
    study.write_bytes(text[:at] + data + text[at:])
    assert_one_line_or_valid(tmp_path, capsys, study)
