"""DenseNet canonizers: function kept, exact restore, coverage, LRP-visible bias maps, conservation, atomicity."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.densenet import DenseNet
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon, Pass
from zennit.types import Activation, BatchNorm
from zennit.types import Linear as AnyLinear

from tests.canonize.architectures import zennit_guard
from xaisearch.canonize import canonizer_name_for, get_canonizer, verify_canonizer
from xaisearch.canonize._merge_right import FoldSliceRight, ThresholdedReLU, scale_shift
from xaisearch.canonize.base import SurgeryStep
from xaisearch.canonize.densenet import VARIANTS
from xaisearch.canonize.fold_right import BiasMapConv2d
from xaisearch.canonize.plan import IdentityBatchNorm
from xaisearch.canonize.verify import randomize_batchnorm, restore_problems, state_snapshot, structure_snapshot

CANONIZERS = [f"densenet.{variant}" for variant in VARIANTS]


def mini_densenet() -> DenseNet:
    torch.manual_seed(0)
    return DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2, num_classes=5).eval()


@pytest.fixture
def random_bn_densenet() -> DenseNet:
    model = mini_densenet()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    return model


def module_tree(model: nn.Module) -> list[tuple[str, int]]:
    return [(name, id(module)) for name, module in model.named_modules()]


# --- function, coverage, restore -----------------------------------------------------------------


@pytest.mark.parametrize("name", CANONIZERS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_mini_densenet_keeps_its_function_and_restores_exactly(name, dtype, tolerance):
    """Float64 also runs verify's relevance checks (Σ R_in / logit on a bias-free copy under LRP-ε,
    batch = one by one, state after attribution) and its injected-failure atomicity check."""
    checks = dtype == torch.float64
    model = mini_densenet()
    report = verify_canonizer(
        model, get_canonizer(name), (3, 32, 32), dtype=dtype, batch_size=2, relevance=checks, atomicity=checks
    )
    assert report.max_rel_diff <= tolerance
    assert report.restored_exactly, report.restore_problems
    assert report.passed(), report
    assert report.bn_total == 16
    if name == "densenet.head_only":
        assert report.bn_folded == 0 and len(report.unfolded) == 16
        assert all("baseline arm" in reason for reason in report.unfolded.values())
    else:
        assert report.bn_folded == 16 and report.unfolded == {}
    if checks:
        assert report.conservation_error <= 1e-4 and report.atomicity_problems == []


@pytest.mark.parametrize("name", ["densenet.thresh_seq", "densenet.untangled"])
def test_one_pixel_maps_under_padded_kernels_stay_exact(name):
    """At 16 px the last block is 1×1: every tap of conv2 but the centre hangs over the border."""
    report = verify_canonizer(mini_densenet(), get_canonizer(name), (3, 16, 16), dtype=torch.float64, batch_size=2)
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly


def test_densenet121_in_both_orders_matches_the_reference_counts():
    """canonization.md §7.3: ThreshSeq has 58 bias maps and 120 thresholds, SeqThresh 0 and 62.
    At 48 px the last dense block is 1×1, so every border case of the bias maps is exercised."""
    model = torchvision.models.densenet121(num_classes=10).eval()
    for name, border_maps, thresholds in [("densenet.thresh_seq", 58, 120), ("densenet.seq_thresh", 0, 62)]:
        handles = get_canonizer(name).apply(model)
        modules = list(model.modules())
        assert sum(isinstance(m, BiasMapConv2d) for m in modules) == border_maps
        assert sum(isinstance(m, ThresholdedReLU) for m in modules) == thresholds
        for handle in handles:
            handle.remove()
    report = verify_canonizer(model, get_canonizer("densenet.thresh_seq"), (3, 48, 48), torch.float32, batch_size=2)
    assert report.bn_folded == report.bn_total == 121 and report.unfolded == {}
    assert report.max_rel_diff <= 1e-5 and report.restored_exactly, report.restore_problems


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet.seq_thresh", "densenet.untangled"])
def test_densenet121_other_variants_keep_the_function_in_float32(name):
    model = torchvision.models.densenet121(num_classes=10).eval()
    report = verify_canonizer(model, get_canonizer(name), (3, 48, 48), torch.float32, batch_size=2)
    assert report.bn_folded == 121 and report.max_rel_diff <= 1e-5 and report.restored_exactly


def test_registry_picks_the_paper_variant_for_torchvision_densenets():
    assert canonizer_name_for(mini_densenet()) == "densenet.thresh_seq.paper"
    assert set(CANONIZERS) == {f"densenet.{v}" for v in ("head_only", "thresh_seq", "seq_thresh", "untangled")}


def test_a_batchnorm_without_running_statistics_is_reported_by_name():
    model = mini_densenet()
    model.features.transition1.norm = nn.BatchNorm2d(32, track_running_stats=False).eval()
    plan = get_canonizer("densenet.thresh_seq").plan(model)
    assert "running statistics" in plan.unfolded["features.transition1.norm"]
    assert len(plan.folded) == 15
    report = verify_canonizer(model, get_canonizer("densenet.thresh_seq"), (3, 32, 32), batch_size=2)
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly
    with pytest.raises(ValueError, match="features.transition1.norm"):
        get_canonizer("densenet.untangled").plan(model)


# --- the merge-right pieces -----------------------------------------------------------------------


@pytest.mark.parametrize("kernel, padding", [((3, 3), (1, 1)), ((5, 3), (2, 1)), ((3, 3), (2, 2)), ((2, 4), (1, 0))])
def test_border_bias_map_is_exact_for_every_input_size(kernel, padding):
    """BN → zero-padded conv, merged right, against the original network, on 1×1 up to 7×6 inputs."""
    generator = torch.Generator().manual_seed(0)
    original = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 3, kernel, padding=padding)).double().eval()
    randomize_batchnorm(original, generator)
    canonized = copy.deepcopy(original)
    FoldSliceRight(canonized[0], canonized, "1", "test").register()
    IdentityBatchNorm(canonized[0]).register()
    assert isinstance(canonized[1], BiasMapConv2d)
    smallest = [max(1, k - 2 * p) for k, p in zip(kernel, padding)]
    for height in range(smallest[0], 8):
        for width in range(smallest[1], 7):
            x = torch.randn(2, 4, height, width, generator=generator, dtype=torch.float64)
            torch.testing.assert_close(canonized(x), original(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride, dilation, padding", [(2, 1, 1), (1, 2, 2), (2, 1, "valid"), (1, 1, "same")])
def test_a_batchnorm_slice_merges_into_chosen_columns_of_any_padded_conv(stride, dilation, padding):
    """The Relation Network's two-slot fold through the shared bias-map fold: channels [1:3) of a
    BN into input columns [0:2) and [3:5) of a conv with stride/dilation/'same' padding; the other
    columns are untouched, and ``remove()`` puts the very same module and parameters back."""
    generator = torch.Generator().manual_seed(0)
    norm = nn.BatchNorm2d(4).double().eval()
    randomize_batchnorm(norm, generator)
    conv = nn.Conv2d(6, 3, 3, stride=stride, padding=padding, dilation=dilation).double()
    parent = nn.Module()
    parent.conv = conv
    weight, bias, original = conv.weight, conv.bias, copy.deepcopy(conv)
    step = FoldSliceRight(norm, parent, "conv", "test", channels=slice(1, 3), columns=[slice(0, 2), slice(3, 5)])
    step.register()
    assert type(parent.conv) is (nn.Conv2d if padding == "valid" else BiasMapConv2d)
    for size in (5, 8, 9):
        x = torch.randn(2, 6, size, size, generator=generator, dtype=torch.float64)
        normed = norm(torch.cat([x[:, :1], x[:, :2], x[:, 2:3]], 1))[:, 1:3]  # BN channels [1:3) of x[:, :2]
        normed_too = norm(torch.cat([x[:, :1], x[:, 3:5], x[:, 2:3]], 1))[:, 1:3]
        expected = original(torch.cat([normed, x[:, 2:3], normed_too, x[:, 5:]], 1))
        torch.testing.assert_close(parent.conv(x), expected, rtol=0, atol=1e-12)
    step.remove()
    assert parent.conv is conv and conv.weight is weight and conv.bias is bias


def test_lrp_rules_see_the_border_bias_map():
    """zennit recomputes ``module.forward`` in its rules (forward hooks are bypassed, §7.4).

    With output relevance equal to the output, LRP-ε gives ``Σ R_in = Σ (z − B)``, where ``B``
    is the full bias map; a rule blind to the map would give ``Σ z``."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1)).double().eval()
    randomize_batchnorm(model, generator)
    FoldSliceRight(model[0], model, "1", "test").register()
    IdentityBatchNorm(model[0]).register()
    conv = model[1]
    assert isinstance(conv, BiasMapConv2d)
    assert dict(conv.named_parameters())["bias"] is conv.bias
    x = torch.randn(1, 4, 5, 6, generator=generator, dtype=torch.float64)
    bias_map = conv(x) - F.conv2d(x, conv.weight, padding=1)
    composite = LayerMapComposite([(AnyLinear, Epsilon(1e-12)), (BatchNorm, Pass())])
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x.clone(), lambda out: out)
    torch.testing.assert_close(relevance.sum(), (output - bias_map).sum(), rtol=1e-9, atol=0)
    assert (output.sum() - relevance.sum()).abs() > 1e-3 * output.abs().sum()


def test_thresholded_relu_carries_the_batchnorm_through_the_relu():
    """``ReLU(s·x + t) = s·θ(x) + t̃``, for negative and zero scales too (canonization.md §2.3)."""
    norm = nn.BatchNorm2d(6).double().eval()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -0.7, 0.0, 0.0, 2.0, -1.0]))
        norm.bias.copy_(torch.tensor([0.3, 0.2, 0.4, -0.4, -1.0, -0.5]))
        norm.running_mean.copy_(torch.randn(6, dtype=torch.float64))
    scale, shift = scale_shift(norm, after_relu=True)
    theta = ThresholdedReLU(scale, shift)
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    broadcast = (1, -1, 1, 1)
    expected = torch.relu(norm(x))
    torch.testing.assert_close(scale.view(broadcast) * theta(x) + shift.view(broadcast), expected, rtol=0, atol=1e-14)
    assert isinstance(theta, nn.ReLU) and isinstance(theta, Activation)


# --- relevance conservation, attribution state, atomicity ---------------------------------------------


def test_without_the_module_head_relevance_leaks():
    """The conservation check has teeth: torchvision's functional head loses relevance (ratio 0.928
    on densenet121, canonization.md §1)."""
    report = verify_canonizer(mini_densenet(), get_canonizer("none"), (3, 32, 32), batch_size=2, relevance=True)
    assert report.conservation_error > 1e-3


@pytest.mark.parametrize("name", CANONIZERS)
def test_zennit_composite_restores_the_model_after_attribution(name, random_bn_densenet):
    """zennit's ``Composite.remove`` undoes handles first-to-last; the steps here depend on each other."""
    from zennit.composites import EpsilonPlusFlat

    model = random_bn_densenet
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    tree = module_tree(model)
    x = torch.rand(2, 3, 32, 32)
    before = model(x)
    with zennit_guard(model), Gradient(model, EpsilonPlusFlat(canonizers=[get_canonizer(name)])) as attributor:
        attributor(x.clone(), torch.eye(5)[[0, 1]])
    assert restore_problems(model, identities, state, structure) == []
    assert module_tree(model) == tree and "forward" not in vars(model)
    assert torch.equal(model(x), before)


class Boom(SurgeryStep):
    description = "a step that fails"

    def register(self) -> None:
        raise RuntimeError("boom")

    def remove(self) -> None:
        raise AssertionError("a step that never registered is never removed")


@pytest.mark.parametrize("name", ["densenet.thresh_seq", "densenet.seq_thresh", "densenet.untangled"])
@pytest.mark.parametrize("where", [1, 3, -1])
def test_a_failing_step_leaves_the_model_unchanged(name, where, random_bn_densenet):
    canonizer = get_canonizer(name)

    class FailsHalfway(type(canonizer)):
        def plan(self, model):
            plan = super().plan(model)
            plan.steps.insert(where if where >= 0 else len(plan.steps), Boom())
            return plan

    model = random_bn_densenet
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    tree = module_tree(model)
    x = torch.rand(2, 3, 32, 32)
    before = model(x)
    with pytest.raises(RuntimeError, match="boom"):
        FailsHalfway(canonizer.variant).apply(model)
    assert restore_problems(model, identities, state, structure) == []
    assert module_tree(model) == tree
    assert not any("forward" in vars(module) for module in model.modules())
    assert torch.equal(model(x), before)
