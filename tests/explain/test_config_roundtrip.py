import json

import pytest
import torch
from zennit.attribution import Gradient
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus

import xaisearch
from xaisearch.canonize import get_canonizer
from xaisearch.explain import ExplainerConfig, FirstLayerRule, GroupRule, RuleError, explain
from xaisearch.explain.groups import depth_groups, execution_order, first_layer
from xaisearch.explain.methods import one_hot_target
from xaisearch.models.ref import ModelRef


def config_for(model, rules: dict[str, tuple[str, dict]], first=None, weights=None) -> ExplainerConfig:
    groups = depth_groups(model, (3, 48, 48))
    return ExplainerConfig(
        model=ModelRef(name="mini_vgg", num_classes=4, input_shape=(3, 48, 48), weights=weights),
        canonizer="vgg",
        groups=[GroupRule(name=g, layers=layers, rule=rules[g][0], params=rules[g][1]) for g, layers in groups.items()],
        first_layer=None if first is None else FirstLayerRule(rule=first[0], params=first[1], layer="features.0"),
    )


def zennit_attributions(model, composite, x, y):
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), one_hot_target(y, 4, x.dtype))
    return relevance


def test_json_round_trip_reproduces_attributions_bit_for_bit(random_bn_vgg, scenes, tmp_path):
    x, y = torch.from_numpy(scenes.x), torch.from_numpy(scenes.y)
    config = config_for(
        random_bn_vgg,
        {
            "low": ("gamma", {"gamma": 0.3}),
            "mid": ("alpha_beta", {"alpha": 2.5}),
            "high": ("zplus", {}),
            "dense": ("epsilon", {"epsilon": 0.01}),
        },
        first=("zbox", {"low": 0.0, "high": 1.0}),
    )
    trial_attributions = explain(config, random_bn_vgg, x, y)
    path = config.save(tmp_path / "composite.json")
    assert json.loads(path.read_text())["format"] == "xaisearch.composite/1"
    reloaded = ExplainerConfig.from_json(path.read_text())
    assert reloaded == config
    user_attributions = zennit_attributions(random_bn_vgg, xaisearch.composite_from_config(path, random_bn_vgg), x, y)
    assert torch.equal(user_attributions, trial_attributions)
    assert trial_attributions.abs().sum() > 0


def test_model_from_config_loads_the_named_weights(random_bn_vgg, tmp_path):
    torch.save(random_bn_vgg.state_dict(), tmp_path / "weights.pt")
    config = config_for(
        random_bn_vgg, {g: ("epsilon", {}) for g in ("low", "mid", "high", "dense")}, weights="weights.pt"
    )
    path = config.save(tmp_path / "composite.json")
    rebuilt = xaisearch.model_from_config(path)
    x = torch.rand(2, 3, 48, 48)
    assert torch.equal(rebuilt(x), random_bn_vgg(x)) and not rebuilt.training


@pytest.mark.parametrize(
    "zennit_composite, conv_rule, first",
    [
        (lambda c: EpsilonPlus(canonizers=c), ("zplus", {}), None),
        (lambda c: EpsilonAlpha2Beta1Flat(canonizers=c), ("alpha_beta", {"alpha": 2.0}), ("flat", {})),
        (
            lambda c: EpsilonGammaBox(low=0.0, high=1.0, canonizers=c),
            ("gamma", {"gamma": 0.25}),
            ("zbox", {"low": 0.0, "high": 1.0}),
        ),
    ],
)
def test_seed_configs_equal_zennits_own_composites(random_bn_vgg, scenes, zennit_composite, conv_rule, first):
    x, y = torch.from_numpy(scenes.x[:4]), torch.from_numpy(scenes.y[:4])
    rules = {"low": conv_rule, "mid": conv_rule, "high": conv_rule, "dense": ("epsilon", {"epsilon": 1e-6})}
    ours = explain(config_for(random_bn_vgg, rules, first=first), random_bn_vgg, x, y)
    theirs = zennit_attributions(random_bn_vgg, zennit_composite([get_canonizer("vgg")]), x, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_layers_without_a_rule_are_refused(random_bn_vgg):
    config = config_for(random_bn_vgg, {g: ("epsilon", {}) for g in ("low", "mid", "high", "dense")})
    config.groups = config.groups[:-1]
    with pytest.raises(ValueError, match="plain gradient"):
        xaisearch.composite_from_config(config, random_bn_vgg)


@pytest.mark.parametrize(
    "rule, params, message",
    [
        ("epsilon", {"epsilon": -1.0}, "epsilon must be a number > 0"),
        ("gamma", {"gamma": -0.5}, "gamma must be >= 0"),
        ("alpha_beta", {"alpha": 0.5}, "alpha >= 1"),
        ("zbox", {"low": 1.0, "high": 0.0}, "low < high"),
        ("zplus", {"gamma": 1.0}, "no parameter 'gamma'"),
        ("lrp-0", {}, "unknown rule"),
    ],
)
def test_bad_rules_name_the_problem(rule, params, message):
    with pytest.raises((RuleError, ValueError), match=message):
        GroupRule(name="low", layers=["features.0"], rule=rule, params=params)


def test_alpha_is_made_exact_for_zennit():
    group = GroupRule(name="g", layers=["a"], rule="alpha_beta", params={"alpha": 2.3})
    assert group.params["alpha"] - group.params["beta"] == 1.0


def test_depth_groups_follow_execution_order_not_registration_order():
    class Reordered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.late = torch.nn.Conv2d(4, 4, 3, padding=1)  # registered first, runs last
            self.early = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.late(self.early(x)).mean((2, 3)))

    model = Reordered()
    assert execution_order(model, (3, 8, 8)) == ["early", "late", "head"]
    assert first_layer(model, (3, 8, 8)) == "early"
    assert depth_groups(model, (3, 8, 8)) == {"low": ["early"], "mid": ["late"], "dense": ["head"]}
