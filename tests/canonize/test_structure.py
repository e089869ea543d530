"""What the ResNet, EfficientNet and auto canonizers build: Sum modules zennit hooks, signal-only
gates, right merges with a border bias map inside the layer, named refusals, the registry."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from zennit.core import ParamMod
from zennit.layer import Sum

from tests.canonize.architectures import PartlyFoldable
from xaisearch.canonize import canonizer_name_for, get_canonizer
from xaisearch.canonize.auto import UntraceableModelError
from xaisearch.canonize.fold_right import BiasMapConv2d, FoldBatchNormRight, right_fold_problem
from xaisearch.canonize.gates import signal_gate
from xaisearch.canonize.verify import (
    epsilon_composite,
    randomize_batchnorm,
    restore_problems,
    state_snapshot,
    structure_snapshot,
    verify_canonizer,
)
from xaisearch.models.mini import mini_vgg
from xaisearch.testing.canonizers import UnseenNet, mini_efficientnet, mini_resnet


def random_bn(model: nn.Module) -> nn.Module:
    randomize_batchnorm(model.eval(), torch.Generator().manual_seed(1))
    return model


@pytest.mark.parametrize("name", ["resnet", "auto"])
def test_residual_sums_are_registered_children_that_zennit_hooks(name):
    """zennit #236: a module created inside forward never gets a rule; ours exist before registration."""
    model = random_bn(mini_resnet())
    composite = epsilon_composite(get_canonizer(name))
    composite.register(model)
    try:
        sums = [n for n, m in model.named_modules() if isinstance(m, Sum)]
        assert sums == [f"layer{i}.0.canonizer_sum" for i in range(1, 5)]
        assert all(model.get_submodule(n)._forward_hooks for n in sums)
        assert "forward" in vars(model.layer1[0])
    finally:
        composite.remove()
    assert not any(isinstance(m, Sum) for m in model.modules())
    assert "forward" not in vars(model.layer1[0])


def test_efficientnet_canonizer_gates_every_se_and_sums_every_residual():
    model = random_bn(mini_efficientnet())
    plan = get_canonizer("efficientnet").plan(model)
    gates = [step for step in plan.steps if "gate" in step.description]
    sums = [step for step in plan.steps if "residual" in step.description]
    assert len(gates) == 5 and len(sums) == 2  # every MBConv has SE; two keep their channels and stride 1
    auto = get_canonizer("auto").plan(model)
    assert sum("gate" in s.description for s in auto.steps) == 5
    assert sum("canonizer_sum" in s.description for s in auto.steps) == 2


def test_signal_gate_passes_the_gradient_to_the_signal_and_zeros_to_the_gate():
    signal = torch.randn(2, 3, 4, 4, requires_grad=True)
    gate = torch.rand(2, 3, 1, 1, requires_grad=True)
    out = signal_gate(signal, gate)
    assert torch.equal(out, signal * gate)
    incoming = torch.randn_like(out)
    grad_signal, grad_gate = torch.autograd.grad(out, (signal, gate), incoming)
    assert torch.equal(grad_signal, incoming)
    assert grad_gate is not None and torch.equal(grad_gate, torch.zeros_like(gate))


def test_auto_folds_bn_on_both_sides_of_a_convolution():
    model = random_bn(UnseenNet())
    plan = get_canonizer("auto").plan(model)
    assert sorted(plan.folded) == ["head_norm", "post_norm", "pre_norm", "stem_norm"] and plan.unfolded == {}
    descriptions = "\n".join(step.description for step in plan.steps)
    assert "post_norm: BatchNorm folded into conv" in descriptions
    assert "pre_norm: BatchNorm folded right into conv (replaced, for the border bias map: conv → BiasMapConv2d)" in (
        descriptions
    )
    assert "head_norm: BatchNorm folded right into fc" in descriptions
    assert "model: addition `add` made explicit (canonizer_sum)" in descriptions
    handles = get_canonizer("auto").apply(model)
    try:
        assert isinstance(model.conv, BiasMapConv2d) and model.conv.bias.shape == (12, 7, 7)
        assert isinstance(model.canonizer_sum, Sum)
    finally:
        for handle in reversed(handles):
            handle.remove()
    assert type(model.conv) is nn.Conv2d and not hasattr(model, "canonizer_sum")


def test_auto_names_every_bn_it_cannot_fold_and_why():
    model = random_bn(PartlyFoldable())
    report = verify_canonizer(model, get_canonizer("auto"), (3, 8, 8), batch_size=2)
    assert report.bn_folded == 0 and set(report.unfolded) == {"norm", "grouped_norm"}
    assert "not a module's output" in report.unfolded["norm"] and "add" in report.unfolded["norm"]
    assert "groups=2" in report.unfolded["grouped_norm"]
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly


def test_untraceable_model_is_refused_with_the_reason_and_left_untouched():
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.norm(self.conv(x))
            return y if y.sum() > 0 else -y

    model = DataDependent().eval()
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    with pytest.raises(UntraceableModelError, match=r"torch\.fx.*\['norm'\]"):
        get_canonizer("auto").apply(model)
    assert restore_problems(model, identities, state, structure) == []


@pytest.mark.parametrize(
    "dims, kernel, stride, padding, dilation",
    [(2, 3, 1, 1, 1), (2, 3, 2, 1, 1), (2, 5, 2, 2, 1), (2, 3, 1, 2, 2), (2, 4, 1, "same", 1), (1, 3, 3, 1, 1)]
    + [(3, 3, 2, 1, 1), (2, 3, 1, 0, 1)],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@torch.no_grad()
def test_right_merge_is_exact_for_padded_convolutions(dims, kernel, stride, padding, dilation):
    conv_type, norm_type = {
        1: (nn.Conv1d, nn.BatchNorm1d),
        2: (nn.Conv2d, nn.BatchNorm2d),
        3: (nn.Conv3d, nn.BatchNorm3d),
    }[dims]
    model = random_bn(
        nn.Sequential(norm_type(4), conv_type(4, 3, kernel, stride=stride, padding=padding, dilation=dilation)).double()
    )
    step = FoldBatchNormRight(model[0], "0", [("1", model, model[1])])
    for size in (7, 8) if dims < 3 else (6,):
        x = torch.randn(2, 4, *([size] * dims), dtype=torch.float64)
        reference = model(x)
        step.register()
        folded = model(x)
        step.remove()
        assert float((folded - reference).abs().max() / reference.abs().max()) < 1e-12
        assert torch.equal(model(x), reference)


def test_bias_map_is_the_layers_own_bias_for_lrp_rules():
    """zennit rules recompute ``module.forward`` with modified parameters: zeroing ``bias`` must
    remove the whole border-dependent shift, i.e. the map is part of the layer, not a hook."""
    model = random_bn(nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1)).double())
    handles = get_canonizer("auto").apply(model)
    try:
        layer = model[1]
        assert isinstance(layer, BiasMapConv2d)
        x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
        with ParamMod(lambda param, name: param, zero_params=["bias"])(layer) as modified:
            without_bias = modified.forward(x)
        assert torch.allclose(without_bias, nn.functional.conv2d(x, layer.weight, None, padding=1))
        assert not torch.allclose(layer.forward(x), without_bias)
    finally:
        for handle in reversed(handles):
            handle.remove()


def test_right_merge_refuses_grouped_convolutions_and_rolls_back_within_a_step():
    norm = random_bn(nn.BatchNorm2d(4))
    assert "groups=2" in right_fold_problem(norm, nn.Conv2d(4, 4, 3, groups=2))
    parent = nn.Module()
    parent.good = nn.Conv2d(4, 2, 3, padding=1)
    parent.bad = nn.Conv2d(3, 2, 1)  # three input channels: the fold fails on the second layer
    good = parent.good
    weight, bias = good.weight, good.bias
    step = FoldBatchNormRight(norm, "norm", [("good", parent, parent.good), ("bad", parent, parent.bad)])
    with pytest.raises(RuntimeError):
        step.register()
    assert parent.good is good and good.weight is weight and good.bias is bias
    assert norm.eps == 1e-5 and not torch.equal(norm.running_var, torch.ones(4))


@pytest.mark.parametrize(
    "model, expected",
    [
        (lambda: torchvision.models.resnet18(), "resnet"),
        (lambda: ResNet(Bottleneck, [1, 1, 1, 1], groups=32, width_per_group=4), "resnet"),
        (lambda: torchvision.models.efficientnet_b0(), "efficientnet"),
        (lambda: mini_vgg(), "vgg"),
        (lambda: UnseenNet(), "auto"),
        (lambda: torchvision.models.mobilenet_v3_small(), "auto"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), "none"),
    ],
)
def test_registry_picks_the_canonizer_by_architecture(model, expected):
    assert canonizer_name_for(model()) == expected


def test_canonizing_twice_is_refused_and_rolled_back():
    model = random_bn(mini_resnet(BasicBlock))
    handles = get_canonizer("resnet").apply(model)
    try:
        snapshot = (state_snapshot(model), structure_snapshot(model))
        with pytest.raises(RuntimeError, match="instance forward"):
            get_canonizer("resnet").apply(model)
        assert restore_problems(model, *snapshot[0], snapshot[1]) == []
    finally:
        for handle in reversed(handles):
            handle.remove()


@torch.no_grad()
def test_left_and_right_folds_into_one_convolution_compose_in_plan_order():
    """UnseenNet.conv receives post_norm from the left and pre_norm from the right: the plan puts
    every left fold first, because the right fold builds its replacement from the current weights."""
    model = random_bn(UnseenNet()).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    reference = model(x)
    plan = get_canonizer("auto").plan(model)
    on_conv = [i for i, step in enumerate(plan.steps) if step.description.endswith((" conv", "conv → BiasMapConv2d)"))]
    assert len(on_conv) == 2 and "folded into conv" in plan.steps[on_conv[0]].description
    for index in on_conv:
        plan.steps[index].register()
    assert float((model(x) - reference).abs().max() / reference.abs().max()) < 1e-12
    for index in reversed(on_conv):
        plan.steps[index].remove()
    assert torch.equal(model(x), reference)


def test_auto_leaves_unsafe_functionals_alone_and_says_so():
    """An in-place add whose input is read again, and a product without a sigmoid gate, are kept."""

    class Functionals(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.norm = nn.BatchNorm2d(3)
            self.mix = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.norm(self.conv(x))
            y.add_(x)  # y is read again below: an out-of-place Sum would lose the update
            out = self.mix(y) * x
            out += y  # rebinding in-place add: safe to make explicit
            return out.mean(dim=(2, 3))

    report = verify_canonizer(random_bn(Functionals()), get_canonizer("auto"), (3, 8, 8), batch_size=2)
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly and report.unfolded == {}
    assert report.notes == [
        "model: in-place `add_` changes a tensor that is read again later: left as is",
        "model: product `mul` has no sigmoid gate: left to autograd, relevance is not conserved",
    ]
    assert "model: addition `add` made explicit (canonizer_sum)" in report.steps
