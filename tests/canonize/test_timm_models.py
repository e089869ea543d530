"""``auto`` on timm architectures (random weights, random BN statistics, 2 images of 3×64×64).

Through the shipped conformance suite (``xaisearch.testing.canonizers.check_canonizer``), each
model must, in float64, keep its function (≤ 1e-10 relative), restore exactly, account for every
BatchNorm (folded, or named with the reason), leave no functional structure unhandled
(``notes=False``), conserve relevance on its bias-free copy within 1e-4 and fail atomically; and
in float32 keep its function within 1e-5, or where larger within twice the model's own float32
rounding noise (``tolerance="model_noise"``; ``resolved_tolerance`` says why twice).

What each one exercises: timm's ``BatchNormAct2d`` (a BatchNorm2d with its activation inside:
folded left, never right; dpn68 and densenet121 keep their pre-activation BNs, named), SE with
timm's ``Sigmoid`` (seresnext, regnety) and hard sigmoid (mobilenetv3), ECA's
``view().expand_as()`` gate, selective kernels' softmax over branches and ``torch.sum``,
CBAM's channel and spatial gates, DLA's ``forward(x, shortcut=None)``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.testing.canonizers import CanonizerConformance, check_canonizer

timm = pytest.importorskip("timm")

INPUT = (3, 64, 64)
# name -> (timm.create_model keyword arguments, BatchNorms folded, BatchNorms in total)
MODELS: dict[str, tuple[dict[str, object], int, int]] = {
    "resnet50d": ({}, 55, 55),
    "seresnext26d_32x4d": ({}, 31, 31),
    "ecaresnet26t": ({}, 31, 31),
    "skresnet18": ({}, 36, 36),
    "regnety_002": ({}, 44, 44),
    "dpn68": ({}, 45, 72),  # 27 BatchNormAct2d after a pool, a split or a concatenation
    "densenet121": ({}, 59, 121),  # norm0 and every norm2; 62 pre-activation BNs after a concatenation
    "dla34": ({}, 37, 37),
    "mobilenetv3_small_100": ({}, 34, 34),
    "efficientnet_b0": ({}, 49, 49),
    "resnet18": ({"block_args": {"attn_layer": "cbam"}}, 28, 28),  # CBAM channel + spatial gates
}
auto = functools.partial(get_canonizer, "auto")


def timm_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10, **MODELS[name][0]).eval()


@pytest.mark.parametrize("name", MODELS)
def test_timm_model_keeps_its_function_restores_exactly_and_conserves_relevance(name):
    build = functools.partial(timm_model, name)
    report = check_canonizer(
        auto,
        build,
        INPUT,
        dtype=torch.float64,
        tolerance=1e-10,
        coverage="reported",
        relevance=True,
        atomicity=True,
        notes=False,
    )
    _, folded, total = MODELS[name]
    assert (report.bn_folded, report.bn_total) == (folded, total), report.unfolded
    assert all(
        "BatchNormAct2d runs drop" in reason and "only folds left" in reason for reason in report.unfolded.values()
    )
    check_canonizer(auto, build, INPUT, dtype=torch.float32, tolerance="model_noise", coverage="reported", notes=False)


def test_batchnorm_act_is_not_folded_right_through_its_activation():
    """Folded right through the hidden ReLU this pair was off by 2.18 relative."""
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(BatchNormAct2d(4), nn.Conv2d(4, 3, 1)).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    report = verify_canonizer(model, auto(), (4, 6, 6), batch_size=2)
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly and report.bn_folded == 0
    assert "act (ReLU)" in report.unfolded["0"]


def test_se_with_timm_hard_sigmoid_class_is_a_signal_only_gate():
    """timm's own ``HardSigmoid`` (``relu6(x + 3) / 6``), used where torch lacks ``F.hardsigmoid``."""
    from timm.layers.activations import HardSigmoid
    from timm.layers.squeeze_excite import SEModule

    def build() -> nn.Module:
        torch.manual_seed(0)
        stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        se = SEModule(16, gate_layer=HardSigmoid)
        return nn.Sequential(stem, se, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()

    report = check_canonizer(auto, build, (3, 8, 8), dtype=torch.float64, relevance=True, notes=False)
    assert "1: product `mul` made a signal-only gate" in report.steps


class TestAutoOnTimmDla34(CanonizerConformance):
    """The shipped test-case class on a timm model: every BN folded, float32 bounded by model noise,
    and the state survives repeated attributions under a zennit composite."""

    canonizer_factory = auto
    model_factory = functools.partial(timm_model, "dla34")
    input_shape = INPUT
    float32_tolerance = "model_noise"
