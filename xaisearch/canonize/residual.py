"""Residual additions as explicit ``Sum`` modules, and the ResNet canonizer built on them.

A functional ``out += identity`` is not a module, so no LRP rule can attach to it: the plain
gradient copies the relevance into both summands (resnet50, bias-free copy: Σ R_in / logit
≈ 1e22, canonization.md §5). Stacking the summands on a new last axis and summing them in a
registered ``zennit.layer.Sum`` lets composites give the addition ``Norm``: a split in
proportion to each summand's contribution. The ``Sum`` is created by the canonizer, before
zennit walks ``named_modules``; one created inside ``forward`` never gets a hook (zennit #236).

The replacement forwards below restate torchvision 0.29.1's block code with the addition made
explicit and out of place; a block whose class overrides ``forward`` is not touched and is
named in ``plan.notes``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from zennit.layer import Sum

from xaisearch.canonize.base import CanonizationPlan, Canonizer, ReplaceForward
from xaisearch.canonize.batchnorm import add_left_fold, batchnorm_names, report_unfolded, sequential_left_pairs

SUM_NAME = "canonizer_sum"


def explicit_sum(sum_module: nn.Module, *terms: Tensor) -> Tensor:
    """``terms[0] + terms[1] + …`` computed by ``sum_module`` over a new last axis (broadcast first)."""
    return sum_module(torch.stack(torch.broadcast_tensors(*terms), dim=-1))


def residual_step(name: str, module: nn.Module, forward) -> ReplaceForward:
    """Swap ``module``'s forward for ``forward``, which adds through ``self.canonizer_sum``."""
    where = f"{name}." if name else ""
    return ReplaceForward(
        module,
        forward,
        {SUM_NAME: Sum(dim=-1)},
        f"{name or 'model'}: residual addition made explicit ({where}{SUM_NAME})",
    )


def _basic_block_forward(self: BasicBlock, x: Tensor) -> Tensor:
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(explicit_sum(self.canonizer_sum, identity, out))


def _bottleneck_forward(self: Bottleneck, x: Tensor) -> Tensor:
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(explicit_sum(self.canonizer_sum, identity, out))


# block class -> (explicit forward, the Conv -> BN attribute pairs of its forward)
RESNET_BLOCKS = {
    BasicBlock: (_basic_block_forward, (("conv1", "bn1"), ("conv2", "bn2"))),
    Bottleneck: (_bottleneck_forward, (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))),
}


def _torchvision_block(module: nn.Module):
    """The ``RESNET_BLOCKS`` entry of ``module`` if it runs torchvision's own block forward."""
    for block_type, entry in RESNET_BLOCKS.items():
        if isinstance(module, block_type) and type(module).forward is block_type.forward:
            return entry
    return None


class ResNetCanonizer(Canonizer):
    """torchvision ResNet, ResNeXt and Wide ResNet: fold every Conv → BN, explicit residual ``Sum``.

    Folded pairs follow the blocks' code, not registration order: the stem ``conv1 → bn1``, each
    block's ``convK → bnK`` and ``downsample.0 → downsample.1``. ``fold=False`` is the structural
    arm (the baseline of Pahde et al. 2023): residual ``Sum`` modules only, every BN kept and
    reported.
    """

    name = "resnet"

    def __init__(self, fold: bool = True) -> None:
        self.fold = fold
        if not fold:
            self.name = "resnet.structural"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = CanonizationPlan(batchnorms=batchnorm_names(model))
        modules = dict(model.named_modules())
        pairs: list[tuple[str, str]] = []
        for name, module in modules.items():
            where = f"{name}." if name else ""
            if isinstance(module, ResNet):
                pairs.append((f"{where}conv1", f"{where}bn1"))
            entry = _torchvision_block(module)
            if entry is None:
                if isinstance(module, tuple(RESNET_BLOCKS)):
                    plan.notes.append(f"{name}: {type(module).__name__} overrides forward; its addition is left as is")
                continue
            forward, block_pairs = entry
            pairs += [(where + conv, where + norm) for conv, norm in block_pairs]
            plan.steps.append(residual_step(name, module, forward))
        pairs += [(linear, norm) for linear, _, norm, _ in sequential_left_pairs(model)]
        if self.fold:
            for linear_name, norm_name in pairs:
                add_left_fold(plan, linear_name, modules[linear_name], norm_name, modules[norm_name])
            report_unfolded(plan, "not the output of a ResNet block's Conv (conv1/2/3, downsample.0)")
        else:
            report_unfolded(plan, "structural arm: BatchNorm kept on purpose")
        return plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fold={self.fold})"
