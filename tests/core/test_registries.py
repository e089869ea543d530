"""The registries are the one vocabulary: study files validate against them, without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from xaisearch.canonize.catalog import CANONIZERS
from xaisearch.data.catalog import DATASETS
from xaisearch.errors import InputError
from xaisearch.explain.rules import RULES, searched_params
from xaisearch.metrics.catalog import METRICS
from xaisearch.registry import Registry, UnknownNameError
from xaisearch.spec import SAMPLERS, parse_spec


def demo_data() -> dict:
    with open("studies/demo.yaml") as handle:
        return yaml.safe_load(handle)


def test_a_declared_entry_is_listed_at_once_and_imported_on_first_get():
    registry: Registry[object] = Registry("thing")
    registry.declare("json_decoder", "json.decoder")
    assert registry.available() == ["json_decoder"] and "json_decoder" in registry
    with pytest.raises(RuntimeError, match="did not register"):  # json.decoder registers nothing here
        registry.get("json_decoder")


def test_duplicate_and_unknown_names_are_errors_that_list_the_known_ones():
    registry: Registry[int] = Registry("thing")
    registry.add("one", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("one", 2)
    registry.declare("two", "some.module")
    with pytest.raises(ValueError, match="registered twice"):
        registry.declare("two", "another.module")
    with pytest.raises(UnknownNameError, match=r"known: \['one', 'two'\]"):
        registry.get("three")


def test_declared_metrics_are_exactly_those_their_modules_register():
    import importlib

    from xaisearch.metrics.catalog import CATEGORY_MODULES

    for module in CATEGORY_MODULES:
        importlib.import_module(module)
    for name in METRICS.available():
        cls = METRICS.get(name)
        assert cls.name == name and cls.__module__ == METRICS.declared_module(name)


def test_study_files_validate_without_importing_torch():
    """The fields step of validation (names against the registries) imports no torch; only metric
    parameters, checked after it, need the metric classes."""
    script = textwrap.dedent(
        """
        import sys, yaml
        from xaisearch.spec import StudySpec
        StudySpec.model_validate(yaml.safe_load(open("studies/demo.yaml")))
        print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "zennit", "optuna"})))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_spec_accepts_what_is_registered_and_names_the_registry_in_its_errors(monkeypatch):
    data = demo_data()
    data["canonizer"] = "my_net_canonizer"
    with pytest.raises(InputError, match="unknown canonizer 'my_net_canonizer'"):
        parse_spec(data)
    monkeypatch.setitem(CANONIZERS._entries, "my_net_canonizer", CANONIZERS.get("none"))
    assert parse_spec(data).canonizer == "my_net_canonizer"
    for field, registry, value in (
        (("sampler", "name"), SAMPLERS, "bohb"),
        (("data", "name"), DATASETS, "coco"),
    ):
        broken = demo_data()
        broken[field[0]] = {**broken.get(field[0], {}), field[1]: value}
        with pytest.raises(InputError, match=f"{field[0]}.{field[1]}'.*{value!r}.*{registry.available()[0]!r}"):
            parse_spec(broken)


def test_search_ranges_and_their_bounds_come_from_the_rule_table():
    spec = parse_spec(demo_data())
    searchable = searched_params()
    assert set(spec.search_space.ranges) <= set(searchable)
    default = parse_spec({**demo_data(), "search_space": {"groups": demo_data()["search_space"]["groups"]}})
    for name, bounds in default.search_space.ranges.items():
        assert searchable[name].search is not None and bounds.low == searchable[name].search.low
    broken = demo_data()
    broken["search_space"]["ranges"] = {"alpha": {"low": 0.5, "high": 2.0, "log": False}}
    with pytest.raises(InputError, match=r"ranges\.alpha\.low: alpha must be >= 1"):
        parse_spec(broken)
    assert {rule for rule, d in RULES.items() if not d.any_layer} == {"pass"}
