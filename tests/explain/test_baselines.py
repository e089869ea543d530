"""Baseline methods: each one's defining property, canonization invariance, seeded SmoothGrad, the
exported config's round trip and the config's one-line errors (real zennit attributors, no mocks)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient, SmoothGrad

import xaisearch
from xaisearch.errors import InputError
from xaisearch.explain import ExplainerConfig, build_attributor, build_composite, explain, load_config
from xaisearch.explain.attributors import SeededSmoothGrad, integrated_gradients_baseline
from xaisearch.explain.methods import attribute_with, one_hot_target
from xaisearch.metrics.base import config_explainer, make_explainer
from xaisearch.models.ref import ModelRef

REF = ModelRef(name="mini_vgg", num_classes=4, input_shape=(3, 48, 48))
GRADIENT_FAMILY = {
    "gradient": {},
    "input_x_gradient": {},
    "smoothgrad": {"noise_level": 0.2, "n_samples": 5, "seed": 3},
    "integrated_gradients": {"baseline": "mean", "steps": 8},
    "guided_backprop": {},
}


def config(method: str, canonizer: str = "vgg", **params) -> ExplainerConfig:
    return ExplainerConfig(model=REF, canonizer=canonizer, method=method, params=params)


@pytest.fixture
def batch(scenes):
    return torch.from_numpy(scenes.x[:4]), torch.from_numpy(scenes.y[:4])


def user_attributions(attributor, x, y):
    """What a zennit user does with ``attributor_from_config``."""
    with torch.enable_grad(), attributor:
        _, relevance = attributor(x.clone(), one_hot_target(y, 4, x.dtype))
    return relevance


# -- canonization -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(GRADIENT_FAMILY))
def test_gradient_methods_are_canonization_invariant(random_bn_vgg, batch, method):
    """Canonization keeps the function, so its gradients: equal with and without it, up to float
    error (float64, so that no noisy input's ReLU flips sign between the two)."""
    model, x, y = copy.deepcopy(random_bn_vgg).double(), batch[0].double(), batch[1]
    canonized = explain(config(method, "vgg", **GRADIENT_FAMILY[method]), model, x, y)
    plain = explain(config(method, "none", **GRADIENT_FAMILY[method]), model, x, y)
    assert canonized.abs().sum() > 0
    torch.testing.assert_close(canonized, plain, rtol=1e-8, atol=1e-10 * float(plain.abs().max()))


def test_excitation_backprop_depends_on_canonization(random_bn_vgg, batch):
    """Its ZPlus rule reads the weights, which the BatchNorm fold changes: not a gradient method."""
    model, x, y = copy.deepcopy(random_bn_vgg).double(), batch[0].double(), batch[1]
    canonized = explain(config("excitation_backprop", "vgg"), model, x, y)
    plain = explain(config("excitation_backprop", "none"), model, x, y)
    assert (canonized - plain).abs().max() > 0.1 * canonized.abs().max()


# -- each method's defining property ----------------------------------------------------------
def test_input_x_gradient_is_the_input_times_the_gradient(random_bn_vgg, batch):
    x, y = batch
    gradient = explain(config("gradient"), random_bn_vgg, x, y)
    assert torch.equal(explain(config("input_x_gradient"), random_bn_vgg, x, y), x * gradient)


def test_smoothgrad_without_noise_or_with_one_sample_is_the_gradient(random_bn_vgg, batch):
    x, y = batch
    gradient = explain(config("gradient"), random_bn_vgg, x, y)
    assert torch.equal(explain(config("smoothgrad", n_samples=1, noise_level=0.5), random_bn_vgg, x, y), gradient)
    noiseless = explain(config("smoothgrad", n_samples=6, noise_level=0.0), random_bn_vgg, x, y)
    torch.testing.assert_close(noiseless, gradient, rtol=1e-5, atol=1e-7)
    noisy = explain(config("smoothgrad", n_samples=6, noise_level=0.2), random_bn_vgg, x, y)
    assert (noisy - gradient).abs().max() > 0.05 * gradient.abs().max()


def test_seeded_smoothgrad_is_zennits_smoothgrad_with_its_seed(random_bn_vgg, batch):
    """For one image on the CPU the seeded draws are zennit's after ``torch.manual_seed(seed)``."""
    x, y = batch
    ours = SeededSmoothGrad(random_bn_vgg, noise_level=0.3, n_iter=4, seed=11)
    with torch.random.fork_rng():
        torch.manual_seed(11)
        theirs = user_attributions(SmoothGrad(random_bn_vgg, noise_level=0.3, n_iter=4), x[:1], y[:1])
    assert torch.equal(user_attributions(ours, x[:1], y[:1]), theirs)


def test_seeded_smoothgrad_repeats_itself_and_ignores_the_batch(random_bn_vgg, batch):
    x, y = batch
    smooth = config("smoothgrad", noise_level=0.2, n_samples=4, seed=5)
    first = explain(smooth, random_bn_vgg, x, y)
    torch.manual_seed(123)  # the global random state plays no part
    assert torch.equal(explain(smooth, random_bn_vgg, x, y), first)
    torch.testing.assert_close(explain(smooth, random_bn_vgg, x, y, batch_size=1), first, rtol=1e-5, atol=1e-7)
    other_seed = explain(config("smoothgrad", noise_level=0.2, n_samples=4, seed=6), random_bn_vgg, x, y)
    assert not torch.equal(other_seed, first)


@pytest.mark.parametrize(
    "baseline, extra",
    [("zero", {}), ("mean", {}), ("black", {"input_low": 0.1}), ([0.5, 0.4, 0.3], {})],
)
def test_integrated_gradients_is_complete(random_bn_vgg, batch, baseline, extra):
    """Sundararajan et al.'s completeness: Σ attributions = f(x) − f(baseline) for the target logit,
    up to the Riemann sum's error (right sum, 256 steps; float64)."""
    model, x, y = copy.deepcopy(random_bn_vgg).double(), batch[0][:2].double(), batch[1][:2]
    ig = config("integrated_gradients", baseline=baseline, steps=256, **extra)
    attribution = explain(ig, model, x, y)
    reference = integrated_gradients_baseline(baseline, extra.get("input_low"))(x)
    with torch.no_grad():
        logit_gap = (model(x) - model(reference)).gather(1, y[:, None].long())[:, 0]
    torch.testing.assert_close(attribution.sum((1, 2, 3)), logit_gap, rtol=0.02, atol=2e-3)
    assert logit_gap.abs().min() > 0.01  # a gap the test can see


def test_guided_backprop_passes_only_positive_gradients_through_relus():
    """Input → ReLU → Linear: the guided gradient is (x > 0) · max(W_y, 0), never negative; the plain
    gradient, (x > 0) · W_y, is negative where W_y is."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    ref = ModelRef(name="mini_vgg", num_classes=2, input_shape=(3, 4, 4))
    x, y = torch.randn(3, 3, 4, 4), torch.tensor([0, 1, 1])
    guided = explain(ExplainerConfig(model=ref, method="guided_backprop"), model, x, y)
    plain = explain(ExplainerConfig(model=ref, method="gradient"), model, x, y)
    weights = model[2].weight[y].view_as(x).detach()
    assert torch.equal(guided, (x > 0) * weights.clamp(min=0))
    assert torch.equal(plain, (x > 0) * weights) and (plain < 0).any() and (guided >= 0).all()


class _GuidedReLU(torch.autograd.Function):
    """Springenberg et al.'s ReLU backward: the incoming gradient where it and the input are positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


class _GuidedReLUModule(nn.Module):
    def forward(self, x):
        return _GuidedReLU.apply(x)


def test_guided_backprop_equals_a_reference_implementation(random_bn_vgg, batch):
    x, y = batch
    reference_model = copy.deepcopy(random_bn_vgg)
    for module in list(reference_model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, _GuidedReLUModule())
    xr = x.clone().requires_grad_()
    (reference,) = torch.autograd.grad(reference_model(xr), xr, one_hot_target(y, 4, x.dtype))
    ours = explain(config("guided_backprop", "none"), random_bn_vgg, x, y)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-8)


# -- export and the public API ----------------------------------------------------------------
@pytest.mark.parametrize("method", [*GRADIENT_FAMILY, "excitation_backprop"])
def test_exported_configs_reproduce_the_trials_attributions_bit_for_bit(random_bn_vgg, batch, tmp_path, method):
    x, y = batch
    trial = config(method, "vgg", **GRADIENT_FAMILY.get(method, {}))
    trial_attributions = explain(trial, random_bn_vgg, x, y)
    path = trial.save(tmp_path / "composite.json")
    assert json.loads(path.read_text())["method"] == method
    reloaded, _ = load_config(path)
    assert reloaded == trial
    attributor = xaisearch.attributor_from_config(path, random_bn_vgg)
    assert torch.equal(user_attributions(attributor, x, y), trial_attributions)


@pytest.mark.parametrize("method", ["gradient", "guided_backprop", "excitation_backprop"])
def test_composite_methods_still_load_with_composite_from_config(random_bn_vgg, batch, method):
    x, y = batch
    composite = xaisearch.composite_from_config(config(method), random_bn_vgg)
    expected = explain(config(method), random_bn_vgg, x, y)
    assert torch.equal(user_attributions(Gradient(random_bn_vgg, composite), x, y), expected)


@pytest.mark.parametrize("method", ["input_x_gradient", "smoothgrad", "integrated_gradients"])
def test_attributor_methods_are_refused_as_a_bare_composite(random_bn_vgg, tmp_path, method):
    """A composite with ``Gradient`` would silently give the plain gradient for these."""
    path = config(method).save(tmp_path / "composite.json")
    with pytest.raises(InputError, match=rf"^{path}: field 'method': '{method}' runs with its own zennit attributor"):
        xaisearch.composite_from_config(path, random_bn_vgg)
    with pytest.raises(ValueError, match="attributor_from_config"):
        build_composite(config(method), random_bn_vgg)


def test_metrics_that_explain_again_use_the_method(random_bn_vgg, batch):
    """The explainer metrics get (from a config, or rebound to another model) runs the config's method."""
    x, y = batch
    smooth = config("smoothgrad", noise_level=0.2, n_samples=3, seed=1)
    expected = explain(smooth, random_bn_vgg, x, y)
    from_dict = make_explainer(smooth.model_dump(mode="json"), random_bn_vgg)
    assert from_dict is not None and torch.equal(from_dict(x, y), expected)
    other = copy.deepcopy(random_bn_vgg)
    with torch.no_grad():
        other.classifier[-1].weight.mul_(-1.0)
    rebound = config_explainer(smooth, random_bn_vgg).with_model(other)
    assert torch.equal(rebound(x, y), explain(smooth, other, x, y))
    assert not torch.equal(rebound(x, y), expected)


def test_every_method_runs_under_no_grad_and_leaves_the_model_as_it_was(random_bn_vgg, batch):
    x, y = batch
    before = {name: tensor.clone() for name, tensor in random_bn_vgg.state_dict().items()}
    for method, params in {**GRADIENT_FAMILY, "excitation_backprop": {}}.items():
        with torch.no_grad():
            attribution = attribute_with(build_attributor(config(method, **params), random_bn_vgg), x, y)
        assert attribution.shape == x.shape and torch.isfinite(attribution).all()
    after = random_bn_vgg.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


# -- the config format ------------------------------------------------------------------------
def test_params_are_completed_with_defaults_and_left_out_for_lrp():
    assert config("smoothgrad").params == {"noise_level": 0.1, "n_samples": 20, "seed": 0}
    assert config("integrated_gradients").params == {"baseline": "zero", "steps": 20}
    assert config("guided_backprop").params == {}
    lrp = ExplainerConfig(model=REF)
    assert lrp.method == "lrp" and "params" not in json.loads(lrp.to_json())
    older = json.loads(lrp.to_json())  # a file written before methods had params
    assert load_config(older)[0] == lrp


@pytest.mark.parametrize(
    "method, params, words",
    [
        ("smoothgrad", {"noise": 0.1}, "method 'smoothgrad' has no parameter 'noise'; its parameters are"),
        ("smoothgrad", {"noise_level": -0.1}, "noise_level must be a number >= 0, got -0.1"),
        ("smoothgrad", {"noise_level": "high"}, "noise_level must be a number >= 0, got 'high'"),
        ("smoothgrad", {"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
        ("smoothgrad", {"n_samples": 2.5}, "n_samples must be an integer >= 1, got 2.5"),
        ("smoothgrad", {"n_samples": True}, "n_samples must be an integer >= 1, got True"),
        ("integrated_gradients", {"steps": 0}, "steps must be an integer >= 1, got 0"),
        ("integrated_gradients", {"baseline": "white"}, "baseline must be one of ['zero', 'mean', 'black']"),
        ("integrated_gradients", {"baseline": "black"}, "baseline 'black' needs input_low"),
        ("integrated_gradients", {"input_low": 0.0}, "input_low only applies to baseline 'black'"),
        ("integrated_gradients", {"baseline": [0.1, "a"]}, "a number or one number per channel"),
        ("guided_backprop", {"stabilizer": 1e-6}, "method 'guided_backprop' has no parameter 'stabilizer'"),
        ("lrp", {"gamma": 0.25}, "method 'lrp' has no parameter 'gamma'; it takes none"),
    ],
)
def test_bad_params_are_one_line_naming_the_field(method, params, words):
    data = {"model": REF.model_dump(mode="json"), "method": method, "params": params}
    with pytest.raises(InputError) as caught:
        load_config(data)
    message = str(caught.value)
    assert message.startswith("composite config: field 'params': ") and words in message and "\n" not in message


def test_rules_belong_to_lrp_only():
    data = {
        "model": REF.model_dump(mode="json"),
        "method": "smoothgrad",
        "groups": [{"name": "low", "layers": ["features.0"], "rule": "epsilon"}],
    }
    with pytest.raises(InputError, match="field 'groups': rules apply to method 'lrp' only, not 'smoothgrad'"):
        load_config(data)


def test_a_baseline_with_the_wrong_number_of_channels_names_the_parameter(random_bn_vgg, batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"params.baseline: 2 values for inputs of 3 channels"):
        explain(config("integrated_gradients", baseline=[0.1, 0.2], steps=2), random_bn_vgg, x, y)
