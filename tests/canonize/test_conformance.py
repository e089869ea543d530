"""One conformance suite for the ResNet, EfficientNet and auto canonizers (and VGG through auto).

The checks live in ``xaisearch.testing.canonizers`` (shipped, so that a canonizer written
elsewhere runs the same suite). Every case runs ``verify_canonizer``: the function is kept
(float32 ≤ 1e-5, float64 ≤ 1e-10 relative), ``remove()`` restores the model exactly (state,
parameter identity, structure, BN ε), and every BN is folded unless the case names it; in float64
on small models also relevance conservation on a bias-free copy (within 1e-4), batch = per-sample
attribution, state after the attribution contexts, and failure atomicity. Adding a canonizer is a
registry line plus a case here.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.models.mini import mini_vgg
from xaisearch.testing.canonizers import (
    CanonizerConformance,
    Coverage,
    UnseenNet,
    check_canonizer,
    check_state_survives_attributions,
    mini_efficientnet,
    mini_resnet,
    zoo_model,
)

STRUCTURAL = ("resnet.structural", "efficientnet.structural")

# (canonizer, model label, builder): zoo models at 32 px, float32 (float64 where marked light)
FUNCTION_CASES = [
    ("vgg", "vgg11_bn", lambda: zoo_model("vgg11_bn")),
    ("auto", "vgg11_bn", lambda: zoo_model("vgg11_bn")),
    ("resnet", "resnet18", lambda: zoo_model("resnet18")),
    ("auto", "resnet18", lambda: zoo_model("resnet18")),
    ("resnet", "resnet50", lambda: zoo_model("resnet50")),
    ("resnet", "resnext50_32x4d", lambda: zoo_model("resnext50_32x4d")),
    ("efficientnet", "efficientnet_b0", lambda: zoo_model("efficientnet_b0")),
    ("auto", "efficientnet_b0", lambda: zoo_model("efficientnet_b0")),
    ("auto", "unseen", UnseenNet),
]
LIGHT = {("resnet", "resnet18"), ("auto", "resnet18"), ("auto", "unseen")}

# (canonizer, model label, builder, input side): small models, float64, every check
RELEVANCE_CASES = [
    ("vgg", "mini_vgg", lambda: mini_vgg(image_size=32), 32),
    ("auto", "mini_vgg", lambda: mini_vgg(image_size=32), 32),
    ("resnet", "mini_resnet_basic", lambda: mini_resnet(BasicBlock), 32),
    ("resnet", "mini_resnet_bottleneck", lambda: mini_resnet(Bottleneck), 32),
    ("auto", "mini_resnet_bottleneck", lambda: mini_resnet(Bottleneck), 32),
    ("resnet.structural", "mini_resnet_basic", lambda: mini_resnet(BasicBlock), 32),
    ("efficientnet", "mini_efficientnet", mini_efficientnet, 32),
    ("auto", "mini_efficientnet", mini_efficientnet, 32),
    ("efficientnet.structural", "mini_efficientnet", mini_efficientnet, 32),
    ("auto", "unseen", UnseenNet, 32),
]


def _coverage(canonizer: str) -> Coverage:
    return "structural" if canonizer in STRUCTURAL else "all"


def _factory(canonizer: str):
    return functools.partial(get_canonizer, canonizer)


@pytest.mark.parametrize("canonizer, label, build", FUNCTION_CASES, ids=[f"{c}-{m}" for c, m, _ in FUNCTION_CASES])
def test_zoo_model_keeps_its_function_and_restores_exactly(canonizer, label, build):
    dtypes = [(torch.float32, 1e-5)] + ([(torch.float64, 1e-10)] if (canonizer, label) in LIGHT else [])
    for dtype, tolerance in dtypes:
        check_canonizer(
            _factory(canonizer),
            build,
            (3, 32, 32),
            dtype=dtype,
            tolerance=tolerance,
            coverage=_coverage(canonizer),
            notes=False,
        )


def test_efficientnet_b5_eps_1e3_is_folded_exactly():
    """b5–b7 use BN ε=1e-3, where zennit 0.5.1's merge (ε kept) is off by 1e-3 relative."""
    model = zoo_model("efficientnet_b5")
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    report = verify_canonizer(model, get_canonizer("efficientnet"), (3, 32, 32), dtype=torch.float32, batch_size=2)
    assert report.max_rel_diff <= 1e-5 and report.restored_exactly
    assert report.bn_folded == report.bn_total == 116


@pytest.mark.parametrize(
    "canonizer, label, build, side", RELEVANCE_CASES, ids=[f"{c}-{m}" for c, m, _, _ in RELEVANCE_CASES]
)
def test_small_model_passes_every_check_in_float64(canonizer, label, build, side):
    report = check_canonizer(
        _factory(canonizer),
        build,
        (3, side, side),
        dtype=torch.float64,
        tolerance=1e-10,
        coverage=_coverage(canonizer),
        relevance=True,
        atomicity=True,
    )
    assert report.conservation_error <= 1e-4, report.conservation_ratios
    assert report.batch_rel_diff <= 1e-8
    assert report.passed()


def test_conservation_check_has_teeth():
    """Without the explicit Sum, the plain gradient copies relevance into both summands."""
    report = verify_canonizer(mini_resnet(), get_canonizer("none"), (3, 32, 32), batch_size=2, relevance=True)
    assert report.conservation_error > 0.1 and not report.passed()
    with pytest.raises(AssertionError):
        check_canonizer(
            _factory("none"), mini_resnet, (3, 32, 32), dtype=torch.float64, coverage="reported", relevance=True
        )


@pytest.mark.parametrize(
    "canonizer, build",
    [("resnet", mini_resnet), ("efficientnet", mini_efficientnet), ("auto", mini_efficientnet), ("auto", UnseenNet)],
)
def test_model_state_survives_many_attributions(canonizer, build):
    """Parameters, state_dict, structure and an optimizer built before attributions stay intact."""
    check_state_survives_attributions(_factory(canonizer), build, (3, 32, 32))


class TestAutoOnUnseenNet(CanonizerConformance):
    """The shipped test-case class, run as a user would: ``auto`` on a model no canonizer knows."""

    canonizer_factory = functools.partial(get_canonizer, "auto")
    model_factory = UnseenNet
    input_shape = (3, 32, 32)
