"""The documented metric-setting perturbations of the stability check."""

import xaisearch.metrics.settings as settings
from xaisearch.metrics.registry import make_metric
from xaisearch.metrics.settings import PERTURBATIONS, applicable_perturbations
from xaisearch.metrics.suite import WeightedMetric, suite_entries


def by_name(name):
    return next(p for p in PERTURBATIONS if p.name == name)


def test_every_perturbation_is_documented_once():
    names = [p.name for p in PERTURBATIONS]
    assert len(names) == len(set(names))
    for name in names:
        assert f"``{name}``" in settings.__doc__ or name.split("=")[1] in settings.__doc__


def test_a_perturbation_changes_its_setting_and_nothing_else():
    flipping = make_metric("pixel_flipping", steps=16, baseline="mean")
    doubled = by_name("steps*2").apply(flipping)
    assert doubled is not None and doubled.steps == 32
    assert {k: v for k, v in doubled.params().items() if k != "steps"} == {
        k: v for k, v in flipping.params().items() if k != "steps"
    }
    assert by_name("steps/2").apply(make_metric("pixel_flipping", steps=3)).steps == 2  # at least 2 steps
    assert by_name("baseline=mean").apply(flipping) is None  # already the mean
    assert by_name("baseline=blur").apply(flipping).baseline == "blur"
    assert by_name("noise*2").apply(make_metric("avg_sensitivity", radius=0.2)).radius == 0.4
    assert by_name("noise/2").apply(make_metric("local_lipschitz", std=0.1)).std == 0.05
    assert by_name("steps*2").apply(make_metric("sparseness")) is None  # no such setting


def test_the_demo_suite_gets_the_baseline_steps_and_pooling_perturbations():
    entries = [
        WeightedMetric(make_metric("relevance_mass_accuracy"), 1.0),
        WeightedMetric(make_metric("pixel_flipping", steps=16, baseline="mean"), 1.0),
        WeightedMetric(make_metric("sparseness"), 0.5),
    ]
    found = {p.name: perturbed for p, perturbed in applicable_perturbations(entries)}
    assert set(found) == {
        "baseline=black",
        "baseline=blur",
        "baseline=uniform",
        "steps/2",
        "steps*2",
        "pooling=sum_abs",
        "pooling=pos_sum",
    }
    blurred = found["baseline=blur"]
    assert [e.weight for e in blurred] == [1.0, 1.0, 0.5]
    assert blurred[0].metric == entries[0].metric and blurred[2].metric == entries[2].metric


def test_the_paper_suite_gets_patch_and_noise_perturbations():
    names = {p.name for p, _ in applicable_perturbations(suite_entries("paper", image_size=48))}
    assert {"patch_size/2", "patch_size*2", "noise/2", "noise*2"} <= names


def test_a_suite_without_the_setting_is_not_perturbed():
    small = make_metric("relevance_mass_accuracy")
    assert by_name("patch_size*2").apply(small) is None
    entries = [WeightedMetric(small)]
    assert by_name("steps*2").perturbed(entries) is None
