"""``densenet.<variant>.paper`` gives Pahde et al.'s own DenseNet attributions (issue 13, item 5).

The reference is ``xaisearch.testing.densenet_reference``: the authors' formulation restated with
their mechanisms (hooked thresholds that zennit's rules never reach, a hooked shift map that they
never see, functional ReLU and pooling in the untangled model), sharing no code with the
canonizers. Our paper variants do the same with modules (``PlainGradientThresholdedReLU``,
``HookedBiasMapConv2d``, ``PlainGradient``). They must compute the model's function and give the
reference's attributions under zennit's ``EpsilonPlus``, ``EpsilonGammaBox`` and
``EpsilonAlpha2Beta1``, with zennit's composites and with ours (``build_composite``), while the
default variants, whose rules see more, give different ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.densenet import DenseNet
from zennit.attribution import Gradient
from zennit.core import Composite
from zennit.rules import Epsilon, Pass
from zennit.types import Activation, AvgPool

from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.canonize._merge_right import (
    FoldSliceRight,
    PlainGradientThresholdedReLU,
    ThresholdedReLU,
    scale_shift,
)
from xaisearch.canonize.catalog import CANONIZERS
from xaisearch.canonize.densenet import PAPER_VARIANTS, DenseNetCanonizer, PlainGradient
from xaisearch.canonize.fold_right import BiasMapConv2d, HookedBiasMapConv2d
from xaisearch.canonize.plan import IdentityBatchNorm
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.explain.methods import attribute, build_composite
from xaisearch.testing.densenet_reference import (
    COMPOSITES,
    attributions,
    cosine,
    equivalent_config,
    reference_canonized,
    zennit_composite,
)

LOW, HIGH = -3.0, 3.0  # EpsilonGammaBox's input bounds; the inputs are clamped to them
AGREE = 0.9999


def random_bn(build: Callable[[], DenseNet]) -> DenseNet:
    torch.manual_seed(0)
    model = build().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))  # running statistics and affine parameters
    return model


@pytest.fixture(scope="module")
def mini() -> DenseNet:
    return random_bn(
        lambda: DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=5)
    )


def images(size: int, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(count, 3, size, size, generator=generator).clamp(LOW, HIGH)
    return x, torch.arange(count) % 5


def canonized_attributions(model: nn.Module, composite: str, canonizer: str, x, target) -> torch.Tensor:
    return attributions(model, zennit_composite(composite, [get_canonizer(canonizer)], LOW, HIGH), x, target)


def reference_attributions(model: DenseNet, variant: str, composite: str, x, target) -> torch.Tensor:
    return attributions(reference_canonized(model, variant), zennit_composite(composite, [], LOW, HIGH), x, target)


# --- names and function ---------------------------------------------------------------------------


def test_the_paper_variants_are_registered_and_head_only_has_none():
    assert {f"densenet.{v}.paper" for v in PAPER_VARIANTS} <= set(CANONIZERS.available())
    assert PAPER_VARIANTS == ("thresh_seq", "seq_thresh", "untangled")
    canonizer = get_canonizer("densenet.untangled.paper")
    assert isinstance(canonizer, DenseNetCanonizer) and canonizer.paper_rules
    assert canonizer.name == "densenet.untangled.paper" and "paper_rules=True" in repr(canonizer)
    with pytest.raises(ValueError, match="baseline arm"):
        DenseNetCanonizer("head_only", paper_rules=True)


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_a_paper_variant_keeps_the_function_and_restores_exactly(variant, dtype, tolerance):
    """In float64 also verify's relevance checks where they hold: the threshold variants conserve on
    a bias-free copy (inactive units carry 0 there, so mask and Pass agree). ``untangled.paper``
    does not: the reference's functional pooling and ReLUs lose and gain relevance."""
    checks = dtype == torch.float64 and variant != "untangled"
    model = DenseNet(8, (2, 2, 2), 16, 2, num_classes=5).eval()
    name = f"densenet.{variant}.paper"
    report = verify_canonizer(
        model, get_canonizer(name), (3, 32, 32), dtype=dtype, batch_size=2, relevance=checks, atomicity=checks
    )
    assert report.max_rel_diff <= tolerance and report.restored_exactly, report.restore_problems
    assert report.bn_folded == report.bn_total == 16 and report.passed(), report
    if checks:
        assert report.conservation_error <= 1e-4 and report.atomicity_problems == []


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_the_reference_and_the_paper_variant_compute_the_model(mini, variant):
    x, _ = images(32)
    with torch.no_grad():
        expected = mini(x)
        torch.testing.assert_close(reference_canonized(mini, variant)(x), expected, rtol=0, atol=1e-5)
        model = copy.deepcopy(mini)
        handles = get_canonizer(f"densenet.{variant}.paper").apply(model)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
        for handle in handles:
            handle.remove()


# --- attributions -------------------------------------------------------------------------------


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_a_paper_variant_reproduces_the_reference(mini, variant, composite):
    x, target = images(32)
    expected = reference_attributions(mini, variant, composite, x, target)
    ours = canonized_attributions(mini, composite, f"densenet.{variant}.paper", x, target)
    assert cosine(ours, expected).min() >= AGREE


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_the_default_variant_does_not(mini, variant):
    """So the comparison can fail: the default rules see the shift map and pass the thresholds."""
    x, target = images(32)
    similarities = [
        float(
            cosine(
                canonized_attributions(mini, composite, f"densenet.{variant}", x, target),
                reference_attributions(mini, variant, composite, x, target),
            ).min()
        )
        for composite in COMPOSITES
    ]
    assert min(similarities) < 0.99, similarities


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_our_composites_reproduce_the_reference_too(mini, variant, composite):
    """``build_composite`` of the config equivalent to zennit's composite: no rule reaches the
    paper modules there either (they are no Activation, no AvgPool, and named in no group)."""
    x, target = images(32)
    config = equivalent_config(mini, composite, f"densenet.{variant}.paper", LOW, HIGH, (3, 32, 32))
    ours = attribute(mini, build_composite(config, mini), x, target)
    assert cosine(ours, reference_attributions(mini, variant, composite, x, target)).min() >= AGREE


def test_densenet121_paper_variants_reproduce_the_reference_at_64_px():
    """EpsilonGammaBox, where the defaults differ most; untangled (5 s a call) is left to the bench."""
    model = random_bn(lambda: torchvision.models.densenet121(num_classes=10))
    x, target = images(64, count=1)
    for variant in ("thresh_seq", "seq_thresh"):
        expected = reference_attributions(model, variant, "epsilon_gamma_box", x, target)
        paper = canonized_attributions(model, "epsilon_gamma_box", f"densenet.{variant}.paper", x, target)
        default = canonized_attributions(model, "epsilon_gamma_box", f"densenet.{variant}", x, target)
        assert cosine(paper, expected).min() >= AGREE
        assert cosine(default, expected).min() < 0.99


# --- the mechanisms -------------------------------------------------------------------------------


def base_map_composite() -> Composite:
    """``Pass`` on activations, nothing else: what any LRP composite does to a ReLU."""
    return Composite(module_map=lambda ctx, name, module: Pass() if isinstance(module, Activation) else None)


def test_a_paper_threshold_takes_the_plain_gradient_and_the_default_one_pass():
    """zennit gives a module its composite maps to ``None`` no hook: autograd's gradient, the
    active-unit mask, carries the relevance, as through the reference's hooked threshold."""
    norm = nn.BatchNorm2d(4).eval()
    randomize_batchnorm(norm, torch.Generator().manual_seed(0))
    scale, shift = scale_shift(norm, after_relu=True)
    x = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(2))
    active = (x * scale.float().view(1, -1, 1, 1) + shift.float().view(1, -1, 1, 1) > 0).float()
    assert 0 < active.mean() < 1
    for kind, expected in [(PlainGradientThresholdedReLU, upstream * active), (ThresholdedReLU, upstream)]:
        theta = nn.Sequential(kind(scale, shift, dtype=torch.float32))
        assert isinstance(theta[0], Activation) == (kind is ThresholdedReLU)
        relevance = attributions_with(theta, base_map_composite(), x, upstream)
        torch.testing.assert_close(relevance, expected, rtol=0, atol=0)


def attributions_with(model: nn.Module, composite: Composite, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    with Gradient(model, composite) as attributor:
        _, relevance = attributor(x.clone(), upstream)
    return relevance


@pytest.mark.parametrize("module", [nn.ReLU(), nn.AvgPool2d(2, 2), nn.AdaptiveAvgPool2d((1, 1))])
def test_plain_gradient_modules_compute_their_module_and_match_no_zennit_type(module):
    plain = PlainGradient.of(module)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(plain(x), module(x))
    assert not isinstance(plain, (Activation, AvgPool)) and list(plain.children()) == []
    with pytest.raises(ValueError, match="nn.ReLU or average pooling"):
        PlainGradient.of(nn.MaxPool2d(2))


def folded_pair(hooked: bool) -> tuple[nn.Sequential, nn.Sequential]:
    """BN → bias-free zero-padded conv (DenseNet's ``norm2 → conv2``), and a copy with the BN merged right."""
    generator = torch.Generator().manual_seed(0)
    original = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, padding=1, bias=False)).double().eval()
    randomize_batchnorm(original, generator)
    canonized = copy.deepcopy(original)
    FoldSliceRight(canonized[0], canonized, "1", "test", hooked_bias_map=hooked).register()
    IdentityBatchNorm(canonized[0]).register()
    return original, canonized


def test_lrp_rules_do_not_see_a_hooked_shift_map():
    """LRP-ε with the output as its relevance: a rule whose ``z`` holds no shift passes all of it,
    ``Σ R_in = Σ output``; the default ``BiasMapConv2d``'s rule keeps the map, ``Σ R_in = Σ (z − B)``."""
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    composite = Composite(
        module_map=lambda ctx, name, module: Epsilon(1e-12) if isinstance(module, nn.Conv2d) else None
    )
    sums = {}
    for hooked, kind in [(True, HookedBiasMapConv2d), (False, BiasMapConv2d)]:
        original, canonized = folded_pair(hooked)
        conv = canonized[1]
        assert type(conv) is kind
        torch.testing.assert_close(canonized(x), original(x), rtol=0, atol=1e-12)
        with torch.no_grad():  # the hooked conv's forward is the rule's view; the default's adds the map itself
            shift_map = conv(x) - (conv.forward(x) if hooked else nn.functional.conv2d(x, conv.weight, padding=1))
        assert shift_map.abs().min() > 0
        with Gradient(canonized, composite) as attributor:
            output, relevance = attributor(x.clone(), lambda out: out)
        sums[hooked] = (relevance.sum(), output.sum(), (output - shift_map).sum())
    relevance, output, _ = sums[True]
    torch.testing.assert_close(relevance, output, rtol=1e-9, atol=0)
    relevance, output, without_map = sums[False]
    torch.testing.assert_close(relevance, without_map, rtol=1e-7, atol=0)
    assert (relevance - output).abs() > 1e-3 * output.abs()


def test_a_hooked_shift_map_keeps_the_conv_bias_and_no_parameter_holds_it():
    _, canonized = folded_pair(hooked=True)
    conv = canonized[1]
    assert conv.bias is None and [name for name, _ in conv.named_parameters()] == ["weight"]
    assert "shift_table" in dict(conv.named_buffers())
