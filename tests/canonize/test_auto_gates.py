"""What ``auto`` does with BatchNorm subclasses that hide an activation, with defaulted forward
arguments, and with gated products beyond ``nn.Sigmoid``; and the float32 bound by model noise.

The modules here restate, without timm, the shapes timm builds (``BatchNormAct2d``, ``DlaBasic``,
SE with a ``Sigmoid`` that is not ``nn.Sigmoid``, hard sigmoid, ECA, selective kernels, CBAM);
``test_timm_models.py`` runs timm's own.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit.layer import Sum

from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.canonize.norm_act import own_forward_problem, right_fold_norm_problem
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.testing.canonizers import check_canonizer, float32_noise, mini_efficientnet, resolved_tolerance

auto = functools.partial(get_canonizer, "auto")


class NormAct(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d`` in short: a BatchNorm2d whose forward also runs ``drop`` and ``act``."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.drop = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps)
        return self.act(self.drop(x))


class ScaledNorm(nn.BatchNorm2d):
    """A subclass whose forward is more than BN then children: no fold may assume otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(2 * x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.1, self.eps)


def random_bn(model: nn.Module) -> nn.Module:
    randomize_batchnorm(model.eval(), torch.Generator().manual_seed(1))
    return model


def test_batchnorm_with_an_activation_inside_is_never_folded_right():
    """Folded right through its ReLU, ``NormAct(4) → Conv2d(4, 3, 1)`` was off by 2.18 relative."""
    model = random_bn(nn.Sequential(NormAct(4), nn.Conv2d(4, 3, 1)))
    report = verify_canonizer(model, auto(), (4, 6, 6), batch_size=2)
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly
    assert report.bn_folded == 0 and "act (ReLU)" in report.unfolded["0"] and "only folds left" in report.unfolded["0"]
    assert right_fold_norm_problem(nn.BatchNorm2d(4)) is None and right_fold_norm_problem(NormAct(4)) is not None


def test_batchnorm_with_an_activation_inside_folds_left_and_keeps_its_activation():
    model = random_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), NormAct(4), nn.Conv2d(4, 3, 1)))
    assert own_forward_problem(model[1]) is None
    report = check_canonizer(lambda: auto(), lambda: model, (3, 6, 6), dtype=torch.float64, relevance=True)
    assert report.bn_folded == report.bn_total == 1
    handles = auto().apply(model)
    try:
        x = torch.randn(2, 4, 6, 6)
        assert torch.equal(model[1](x), F.relu(x))  # BN part is the identity, its activation still runs
    finally:
        for handle in reversed(handles):
            handle.remove()


def test_batchnorm_subclass_whose_forward_is_not_bn_then_children_is_not_folded():
    model = random_bn(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ScaledNorm(4), nn.Conv2d(4, 3, 1)))
    report = verify_canonizer(model, auto(), (3, 6, 6), batch_size=2)
    assert report.bn_folded == 0 and report.max_rel_diff <= 1e-10
    assert "normalises something other than its input" in report.unfolded["1"]


class ShortcutBlock(nn.Module):
    """timm's ``DlaBasic``: ``forward(x, shortcut=None)`` adds ``x`` when no shortcut is given."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        return F.relu(self.norm(self.conv(x)) + shortcut)


class Tree(nn.Module):
    """Calls one block with a shortcut and the next without, as ``DlaTree`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.project = nn.Conv2d(4, 4, 1)
        self.first = ShortcutBlock(4)
        self.second = ShortcutBlock(4)
        self.pool = nn.AdaptiveAvgPool2d(1)  # a module: a functional mean has no LRP rule
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.second(self.first(x, self.project(x)))
        return self.head(self.pool(x).flatten(1))


def test_defaulted_arguments_are_traced_as_the_model_passes_them():
    report = check_canonizer(auto, Tree, (3, 8, 8), dtype=torch.float64, relevance=True, atomicity=True, notes=False)
    assert report.bn_folded == 2
    assert sum("canonizer_sum" in step for step in report.steps) == 2
    model = random_bn(Tree())
    handles = auto().apply(model)
    try:
        x = torch.randn(1, 4, 8, 8)
        with pytest.raises(AssertionError, match="specialized"):  # traced without a shortcut: guarded
            model.second(x, x)
    finally:
        for handle in reversed(handles):
            handle.remove()


class MethodSigmoid(nn.Module):
    """timm's ``Sigmoid``: not an ``nn.Sigmoid``, its forward calls ``x.sigmoid()``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sigmoid()


class HardSigmoid(nn.Module):
    """timm's ``hard_sigmoid`` where torch has no ``F.hardsigmoid``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, gate: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, 4, 1)
        self.fc2 = nn.Conv2d(4, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class FunctionalSigmoidGate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True))) * x


class Eca(nn.Module):
    """timm's ``EcaModule``: the gate reaches the product through ``view`` and ``expand_as``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.gate = MethodSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        y = self.gate(y).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


class KernelAttention(nn.Module):
    def __init__(self, channels: int, paths: int) -> None:
        super().__init__()
        self.paths = paths
        self.reduce = nn.Conv2d(channels, 4, 1)
        self.select = nn.Conv2d(4, channels * paths, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.select(F.relu(self.reduce(x.sum(1).mean((2, 3), keepdim=True))))
        batch, channels, height, width = x.shape
        return torch.softmax(x.view(batch, self.paths, channels // self.paths, height, width), dim=1)


class SelectiveKernel(nn.Module):
    """timm's ``SelectiveKernel``: branches weighted by a softmax over branches, then summed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.BatchNorm2d(channels), nn.ReLU())
            for d in (1, 2)
        )
        self.attn = KernelAttention(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.stack([path(x) for path in self.paths], dim=1)
        x = x * self.attn(x)
        return torch.sum(x, dim=1)


class SpatialGate(nn.Module):
    """CBAM's spatial attention: a sigmoid over a conv of channel mean and max."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(attention))


class Gated(nn.Module):
    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.gate = gate
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.gate(self.stem(x))).flatten(1))


GATES = {
    "se_method_sigmoid": lambda: SqueezeExcite(8, MethodSigmoid()),
    "se_hard_sigmoid_pattern": lambda: SqueezeExcite(8, HardSigmoid()),
    "se_nn_hardsigmoid": lambda: SqueezeExcite(8, nn.Hardsigmoid()),
    "se_sequential_gate": lambda: SqueezeExcite(8, nn.Sequential(nn.Identity(), nn.Sigmoid())),
    "functional_sigmoid": lambda: FunctionalSigmoidGate(8),
    "eca": lambda: Eca(8),
    "selective_kernel": lambda: SelectiveKernel(8),
    "cbam_spatial": SpatialGate,
}


@pytest.mark.parametrize("gate", GATES)
def test_gated_products_become_signal_only_and_conserve_relevance(gate):
    torch.manual_seed(0)
    report = check_canonizer(
        auto, lambda: Gated(GATES[gate]()), (3, 8, 8), dtype=torch.float64, relevance=True, notes=False
    )
    assert any("gate: product" in step and "signal-only gate" in step for step in report.steps), report.steps


def test_selective_kernel_sum_over_branches_is_a_sum_module():
    """Without it the plain gradient of ``torch.sum(x, dim=1)`` hands every branch all the relevance."""
    model = random_bn(Gated(SelectiveKernel(8)))
    handles = auto().apply(model)
    try:
        assert isinstance(model.gate.canonizer_sum, Sum) and model.gate.canonizer_sum.dim == 1
    finally:
        for handle in reversed(handles):
            handle.remove()


def test_product_without_a_gate_operand_is_still_a_note():
    class TwoGates(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x) * torch.softmax(x, dim=1)

    report = verify_canonizer(Gated(TwoGates()), auto(), (3, 8, 8), batch_size=2)
    assert report.notes == ["gate: product `mul` has no sigmoid gate: left to autograd, relevance is not conserved"]


def test_float32_bound_by_model_noise_is_never_below_1e5_and_float64_stays_exact():
    model = mini_efficientnet()
    noise = float32_noise(model, (3, 32, 32))
    assert 0 < noise < 1e-3
    assert resolved_tolerance("model_noise", torch.float32, model, (3, 32, 32)) == max(1e-5, 2 * noise)
    assert resolved_tolerance("model_noise", torch.float64, model, (3, 32, 32)) == 1e-10
    assert resolved_tolerance(None, torch.float32, model, (3, 32, 32)) == 1e-5
