"""The paper's gamma space: the 7^4 grid with gamma = 0, and a continuous range with a zero option."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import FixedTrial

from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig
from xaisearch.explain.methods import attribute, build_composite
from xaisearch.models.zoo import build_architecture
from xaisearch.search.preflight import preflight
from xaisearch.search.space import SearchSpace
from xaisearch.search.study import make_sampler
from xaisearch.spec import StudySpec
from xaisearch.spec.loading import load_spec, parse_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"
PAPER_GAMMAS = [0.0, 0.1, 0.25, 0.5, 1.0, 10.0, 50.0]
GROUPS = ("low", "mid", "high", "dense")


def paper_study(name: str) -> dict:
    return yaml.safe_load((STUDIES / name).read_text())


def all_params(config: ExplainerConfig) -> dict[str, float]:
    return {group.name: group.params["gamma"] for group in config.groups}


def test_the_paper_grid_has_2401_points_of_single_choice_rules_and_preflight_accepts_it() -> None:
    spec = load_spec(STUDIES / "paper-gamma-grid.yaml")
    assert spec.n_trials == 2401 and spec.sampler.name == "grid"
    space = preflight(spec)  # the grid is built there: every parameter has its values
    grid = space.grid()
    assert {name: values for name, values in grid.items() if name.endswith(".rule")} == {
        **{f"{group}.rule": ["gamma"] for group in GROUPS},
        "first_layer.rule": ["group"],
    }
    assert all(grid[f"{group}.gamma"] == PAPER_GAMMAS for group in GROUPS)
    assert math.prod(len(values) for values in grid.values()) == 2401
    assert isinstance(make_sampler(spec, space), optuna.samplers.BaseSampler)
    config = space.sample(
        FixedTrial(
            {**{f"{g}.rule": "gamma" for g in GROUPS}, "first_layer.rule": "group"}
            | {f"{g}.gamma": 0.0 for g in GROUPS}
        )
    )
    assert all_params(config) == dict.fromkeys(GROUPS, 0.0) and config.first_layer is None


def test_the_grid_sampler_visits_every_point_once_and_stops() -> None:
    """The study's own sampler (seeded per trial) over 2 gammas per group: 16 points, then it stops."""
    data = paper_study("paper-gamma-grid.yaml")
    data["sampler"]["grid"] = {"gamma": [0.0, 50.0]}
    spec = parse_spec(data)
    space = preflight(spec)
    study = optuna.create_study(sampler=make_sampler(spec, space), direction="maximize")
    seen: list[tuple[float, ...]] = []

    def objective(trial: optuna.trial.Trial) -> float:
        gammas = all_params(space.sample(trial))
        seen.append(tuple(gammas.values()))
        return -sum(gammas.values())

    study.optimize(objective, n_trials=40)
    assert len(seen) == 16 and len(set(seen)) == 16
    assert study.best_value == 0.0


def test_gamma_zero_is_plain_lrp_zero() -> None:
    """gamma = 0 on every layer is the z-rule: the same relevance as epsilon = 1e-6 (both LRP-0
    with a 1e-6 stabiliser), which a gamma of 0.25 is not."""
    spec = load_spec(STUDIES / "paper-gamma-grid.yaml")
    space = preflight(spec)
    torch.manual_seed(0)
    model = build_architecture(space.model_ref).eval()
    x, y = torch.rand(4, *spec.model.input_shape), torch.tensor([0, 1, 2, 3])

    def relevance(rule: str, value: float) -> torch.Tensor:
        config = space.sample(
            FixedTrial(
                {f"{g}.rule": "gamma" for g in GROUPS}
                | {"first_layer.rule": "group"}
                | {f"{g}.gamma": 0.0 for g in GROUPS}
            )
        )
        for group in config.groups:
            group.rule, group.params = rule, {rule: value}
        return attribute(model, build_composite(config, model), x, y)

    lrp_zero = relevance("gamma", 0.0)
    torch.testing.assert_close(lrp_zero, relevance("epsilon", 1e-6), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(lrp_zero, relevance("gamma", 0.25), rtol=1e-2)


# -- the zero option -------------------------------------------------------------------------


def zero_study(**gamma: object) -> dict:
    data = paper_study("paper-gamma-tpe.yaml")
    data["search_space"]["ranges"]["gamma"] = {"low": 0.01, "high": 50.0, "log": True, "zero": True, **gamma}
    return data


def test_the_tpe_study_offers_zero_and_a_log_range() -> None:
    spec = load_spec(STUDIES / "paper-gamma-tpe.yaml")
    bounds = spec.search_space.ranges["gamma"]
    assert (bounds.low, bounds.high, bounds.log, bounds.zero) == (0.01, 50.0, True, True)
    assert spec.sampler.name == "tpe" and spec.n_trials == 120


def test_zero_is_refused_for_a_parameter_whose_rule_needs_it_positive() -> None:
    data = zero_study()
    data["search_space"]["groups"]["dense"] = {"rules": ["epsilon"]}
    data["search_space"]["ranges"]["epsilon"] = {"low": 1e-6, "high": 1.0, "zero": True}
    with pytest.raises(InputError, match=r"ranges\.epsilon\.zero: epsilon must be a number > 0.*remove zero") as error:
        parse_spec(data)
    assert "\n" not in str(error.value)


def test_the_stored_form_names_zero_only_when_it_is_offered() -> None:
    """Studies made before the option keep their stored form and hash; a study with it keeps it."""
    plain = load_spec(STUDIES / "paper-gamma-grid.yaml")
    assert all("zero" not in bounds for bounds in plain.stored_form()["search_space"]["ranges"].values())
    with_zero = parse_spec(zero_study())
    stored = with_zero.stored_form()
    assert stored["search_space"]["ranges"]["gamma"]["zero"] is True
    assert StudySpec.model_validate(stored).content_hash() == with_zero.content_hash()
    assert parse_spec(zero_study(zero=False)).content_hash() != with_zero.content_hash()


def test_a_trial_first_chooses_zero_then_samples_gamma_only_when_not() -> None:
    space = preflight(parse_spec(zero_study()))
    base = {f"{g}.rule": "gamma" for g in GROUPS} | {"first_layer.rule": "group"}
    zeros = {f"{g}.gamma.zero": g in ("low", "dense") for g in GROUPS}
    config = space.sample(FixedTrial(base | zeros | {"mid.gamma": 0.5, "high.gamma": 20.0}))
    assert all_params(config) == {"low": 0.0, "mid": 0.5, "high": 20.0, "dense": 0.0}

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: sum(all_params(space.sample(trial)).values()), n_trials=40)
    for trial in study.trials:
        for group in GROUPS:
            zero = trial.params[f"{group}.gamma.zero"]
            assert (f"{group}.gamma" in trial.params) == (not zero)
            if not zero:
                assert 0.01 <= trial.params[f"{group}.gamma"] <= 50.0
    chosen = [trial.params[f"{g}.gamma.zero"] for trial in study.trials for g in GROUPS]
    assert 0 < sum(chosen) < len(chosen)


def test_under_the_grid_sampler_the_grid_values_decide_and_no_zero_choice_is_made() -> None:
    data = zero_study()
    data["sampler"] = {"name": "grid", "grid": {"gamma": [0.0, 1.0]}}
    space = preflight(parse_spec(data))
    assert not any(name.endswith(".zero") for name in space.grid())


def seeds_space(zero: bool, low: float = 0.01) -> SearchSpace:
    """Conv groups offer gamma (with or without zero), dense offers epsilon: the gamma-box seed fits."""
    data = zero_study(zero=zero, low=low)
    data["search_space"]["groups"]["dense"] = {"rules": ["epsilon"]}
    data["search_space"]["first_layer"] = ["group", "zbox"]
    data["search_space"]["ranges"]["epsilon"] = {"low": 1e-6, "high": 1.0}
    return preflight(parse_spec(copy.deepcopy(data)))


def test_seeds_fix_the_zero_choice_so_a_fixed_trial_reproduces_them() -> None:
    params, why = seeds_space(zero=True).seed_params("epsilon_gamma_box")
    assert why == "" and params is not None
    assert {params[f"{g}.gamma.zero"] for g in ("low", "mid", "high")} == {False}
    config = seeds_space(zero=True).sample(FixedTrial(params))  # every parameter given: nothing left to sample
    assert all_params_of_rule(config, "gamma") == {"low": 0.25, "mid": 0.25, "high": 0.25}
    plain, _ = seeds_space(zero=False).seed_params("epsilon_gamma_box")
    assert plain is not None and not any(name.endswith(".zero") for name in plain)


def test_zero_is_offered_only_with_the_option() -> None:
    """A seed of gamma = 0 fits a range that starts above 0 only through the zero option."""
    assert seeds_space(zero=True, low=0.5)._offers("low.gamma", "gamma", 0.0)
    assert not seeds_space(zero=False, low=0.5)._offers("low.gamma", "gamma", 0.0)
    assert seeds_space(zero=True, low=0.5)._fixed("low.gamma", "gamma", 0.0) == {"low.gamma.zero": True}
    assert not seeds_space(zero=True, low=0.5)._offers("low.gamma", "gamma", 0.25)


def all_params_of_rule(config: ExplainerConfig, rule: str) -> dict[str, float]:
    return {group.name: group.params[rule] for group in config.groups if group.rule == rule}
