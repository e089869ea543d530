"""Searching a baseline method's parameters: the study file's ``method``/``method_params``, the
sampled configs, the grid, and trials that explain (and re-explain) with the sampled method."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FixedTrial

from xaisearch.errors import InputError
from xaisearch.explain import ExplainerConfig, explain
from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.catalog import METRICS
from xaisearch.models.mini import mini_vgg
from xaisearch.search.objective import Objective
from xaisearch.search.preflight import preflight
from xaisearch.search.trial_attributes import CONFIG_ATTR, mean_attr
from xaisearch.search.workbench import Workbench
from xaisearch.spec import StudySpec, parse_spec


def baseline_study(study: dict, method: str, **method_params) -> dict:
    """``study`` searching ``method`` instead of LRP rules (no layer groups, no first-layer rules)."""
    space = {"method": method}
    if method_params:
        space["method_params"] = method_params
    return study | {"search_space": space}


@pytest.fixture
def smoothgrad_study(tiny_study):
    return baseline_study(tiny_study, "smoothgrad", noise_level={"low": 0.01, "high": 0.5, "log": True}, n_samples=4)


def test_a_trial_samples_the_noise_level_and_keeps_the_fixed_parameters(smoothgrad_study):
    spec = parse_spec(smoothgrad_study | {"seed": 7})
    assert spec.seeds == []  # the LRP seed composites do not apply
    space = preflight(spec)
    config = space.sample(FixedTrial({"method.noise_level": 0.2}))
    assert config.method == "smoothgrad" and config.groups == [] and config.first_layer is None
    assert config.params == {"noise_level": 0.2, "n_samples": 4, "seed": 7}  # the study's seed: the same noise
    assert config.canonizer == "vgg"
    assert space.seed_params("epsilon_plus")[0] is None


def test_the_sampler_draws_within_the_ranges_on_their_scales(smoothgrad_study):
    smoothgrad_study["search_space"]["method_params"]["n_samples"] = {"low": 2, "high": 8, "log": False}
    space = preflight(parse_spec(smoothgrad_study))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    configs: list[ExplainerConfig] = []
    study.optimize(lambda trial: configs.append(space.sample(trial)) or 0.0, n_trials=8)
    assert all(0.01 <= c.params["noise_level"] <= 0.5 for c in configs)
    assert all(type(c.params["n_samples"]) is int and 2 <= c.params["n_samples"] <= 8 for c in configs)
    assert len({c.params["noise_level"] for c in configs}) == 8
    distributions = study.trials[0].distributions
    assert distributions["method.noise_level"] == FloatDistribution(0.01, 0.5, log=True)
    assert distributions["method.n_samples"] == IntDistribution(2, 8)


def test_a_searchable_parameter_left_out_is_searched_over_its_default_range(tiny_study):
    spec = parse_spec(baseline_study(tiny_study, "smoothgrad"))
    bounds = spec.search_space.method_params["noise_level"]
    assert (bounds.low, bounds.high, bounds.log) == (0.01, 0.5, True)
    stored = spec.stored_form()["search_space"]["method_params"]
    assert stored == {"noise_level": {"low": 0.01, "high": 0.5, "log": True}}
    assert StudySpec.model_validate(spec.stored_form()).content_hash() == spec.content_hash()


def test_a_zero_noise_choice_is_offered_beside_the_range(smoothgrad_study):
    smoothgrad_study["search_space"]["method_params"]["noise_level"]["zero"] = True
    space = preflight(parse_spec(smoothgrad_study))
    assert space.sample(FixedTrial({"method.noise_level.zero": True})).params["noise_level"] == 0.0


def test_the_grid_sampler_takes_the_method_parameters_values(smoothgrad_study):
    smoothgrad_study["sampler"] = {"name": "grid", "grid": {"noise_level": [0.0, 0.1, 0.3]}}
    assert preflight(parse_spec(smoothgrad_study)).grid() == {"method.noise_level": [0.0, 0.1, 0.3]}
    smoothgrad_study["sampler"]["grid"] = {}
    with pytest.raises(InputError, match=r"sampler.grid: give values for 'noise_level' \(or 'method.noise_level'\)"):
        preflight(parse_spec(smoothgrad_study))


def test_integrated_gradients_black_baseline_is_the_datas_lowest_value(tiny_study):
    study = baseline_study(tiny_study, "integrated_gradients", baseline="black", steps={"low": 4, "high": 32})
    study["data"] |= {"input_low": -0.5, "input_high": 1.5}
    config = preflight(parse_spec(study)).sample(FixedTrial({"method.steps": 16}))
    assert config.params == {"baseline": "black", "steps": 16, "input_low": -0.5}


def test_a_method_without_parameters_is_one_fixed_config(tiny_study):
    space = preflight(parse_spec(baseline_study(tiny_study, "guided_backprop")))
    assert space.grid() == {}
    assert space.sample(FixedTrial({})) == ExplainerConfig(
        model=space.model_ref, canonizer="vgg", method="guided_backprop"
    )


@pytest.mark.parametrize(
    "space, field, words",
    [
        ({"method": "smoothgrads"}, "search_space.method", "unknown method 'smoothgrads'"),
        (
            {"method": "smoothgrad", "method_params": {"noise": 0.1}},
            "search_space.method_params",
            "noise: method 'smoothgrad' has no such parameter; its parameters are ['noise_level', 'n_samples', 'seed']",
        ),
        (
            {"method": "smoothgrad", "method_params": {"n_samples": 0}},
            "search_space.method_params",
            "n_samples must be an integer >= 1, got 0",
        ),
        (
            {"method": "smoothgrad", "method_params": {"n_samples": {"low": 2.5, "high": 8}}},
            "search_space.method_params",
            "n_samples is an integer; give integer bounds, not 2.5",
        ),
        (
            {"method": "smoothgrad", "method_params": {"noise_level": {"low": 0.5, "high": 0.1}}},
            "search_space.method_params",
            "noise_level: low (0.5) must be below high (0.1)",
        ),
        (
            {"method": "smoothgrad", "method_params": {"noise_level": {"low": 0.1, "hihg": 0.3}}},
            "search_space.method_params",
            "noise_level.hihg: is not a known field",
        ),
        (
            {"method": "integrated_gradients", "method_params": {"baseline": {"low": 0.0, "high": 1.0}}},
            "search_space.method_params",
            "baseline: not a number, so it cannot be searched; give one value",
        ),
        (
            {"method": "smoothgrad", "groups": {"low": {"rules": ["gamma"]}}},
            "search_space",
            "groups: holds LRP rules, which method 'smoothgrad' has none of; remove it",
        ),
        ({"method": "lrp"}, "search_space", "groups: method 'lrp' needs its layer groups' rules"),
    ],
)
def test_a_bad_method_space_is_one_line_naming_the_field(tiny_study, space, field, words):
    with pytest.raises(InputError) as caught:
        parse_spec(tiny_study | {"search_space": space})
    message = str(caught.value)
    assert message.startswith(f"study: field '{field}': ") and words in message and "\n" not in message


def test_lrp_studies_keep_their_stored_form(tiny_study):
    """``method`` and ``method_params`` are left out at their defaults: an LRP study's hash is unchanged."""
    spec = parse_spec(tiny_study)
    assert spec.search_space.method == "lrp" and spec.search_space.method_params == {}
    assert not {"method", "method_params"} & set(spec.stored_form()["search_space"])
    with pytest.raises(InputError, match="field 'search_space.method_params': method 'lrp' searches its rules"):
        parse_spec(tiny_study | {"search_space": tiny_study["search_space"] | {"method_params": {"noise_level": 0.1}}})


@dataclass(frozen=True)
class ReExplainedGap(Metric):
    """How far a re-explanation (``ctx.explainer``) is from the scored map: 0 when both use one method."""

    name = "reexplained_gap"
    category = "robustness"
    direction = "lower"
    needs_explainer = True

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        again = ctx.required_explainer(ctx.x, ctx.y)
        return ((again - ctx.a).flatten(1).abs().amax(1) / ctx.a.flatten(1).abs().amax(1)).to(ctx.a.dtype)


def test_trials_explain_and_re_explain_with_the_sampled_method(smoothgrad_study, tmp_path, monkeypatch):
    monkeypatch.setitem(METRICS._entries, ReExplainedGap.name, ReExplainedGap)
    torch.manual_seed(0)
    torch.save(mini_vgg(num_classes=4, image_size=32).state_dict(), tmp_path / "weights.pt")
    smoothgrad_study["model"] = {"name": "mini_vgg", "num_classes": 4, "input_shape": [3, 32, 32]}
    smoothgrad_study["model"]["weights"] = str(tmp_path / "weights.pt")
    smoothgrad_study["data"] = {"n_eval": 8, "batch_size": 8}
    smoothgrad_study["metrics"] = [{"name": "relevance_mass_accuracy"}, {"name": ReExplainedGap.name, "weight": 0.0}]
    bench = Workbench.prepare(parse_spec(smoothgrad_study), tmp_path, torch.device("cpu"))
    heatmaps: list[torch.Tensor] = []
    objective = Objective(bench, upload_heatmaps=lambda trial, x, a: heatmaps.append(a))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=2)
    x, y = bench.batches[0].x[:4], bench.batches[0].y[:4]
    gradient = explain(ExplainerConfig(model=bench.model_ref, method="gradient"), bench.model, x, y)
    for trial, maps in zip(study.trials, heatmaps, strict=True):
        config = ExplainerConfig.model_validate(trial.user_attrs[CONFIG_ATTR])
        assert config.method == "smoothgrad" and config.params["n_samples"] == 4
        assert torch.equal(maps, explain(config, bench.model, x, y))  # what an export reproduces
        assert not torch.allclose(maps, gradient, rtol=0.05)
        assert trial.user_attrs[mean_attr(ReExplainedGap.name)] < 1e-5
