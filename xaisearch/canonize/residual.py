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

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from zennit.layer import Sum

from xaisearch.canonize.base import CanonizationPlan, ReplaceForward
from xaisearch.canonize.fold_left import add_left_fold, fold_sequential_pairs
from xaisearch.canonize.plan import CompositeCanonizer, PlanFragment

SUM_NAME = "canonizer_sum"
BlockForward = Callable[..., Tensor]


def explicit_sum(sum_module: nn.Module, *terms: Tensor) -> Tensor:
    """``terms[0] + terms[1] + …`` computed by ``sum_module`` over a new last axis (broadcast first)."""
    return sum_module(torch.stack(torch.broadcast_tensors(*terms), dim=-1))


def residual_step(name: str, module: nn.Module, forward: BlockForward) -> ReplaceForward:
    """Swap ``module``'s forward for ``forward``, which adds through ``self.canonizer_sum``."""
    where = f"{name}." if name else ""
    return ReplaceForward(
        module,
        forward,
        {SUM_NAME: Sum(dim=-1)},
        f"{name or 'model'}: residual addition made explicit ({where}{SUM_NAME})",
    )


def own_forward_type(module: nn.Module, types: Mapping[type[nn.Module], object]) -> type[nn.Module] | None:
    """The key of ``types`` whose own ``forward`` ``module`` runs (its class does not override it)."""
    for block_type in types:
        if isinstance(module, block_type) and type(module).forward is block_type.forward:
            return block_type
    return None


def explicit_residuals(
    forwards: Mapping[type[nn.Module], BlockForward], adds: Callable[[nn.Module], bool] = lambda module: True
) -> PlanFragment:
    """Plan fragment: every block of a type in ``forwards`` (for which ``adds``) gets that explicit
    forward, which adds through a ``Sum``; a block whose class overrides ``forward`` is noted."""

    def fragment(plan: CanonizationPlan, model: nn.Module) -> None:
        for name, module in model.named_modules():
            if not any(isinstance(module, block_type) for block_type in forwards) or not adds(module):
                continue
            block_type = own_forward_type(module, forwards)
            if block_type is None:
                plan.notes.append(f"{name}: {type(module).__name__} overrides forward; its addition is left as is")
            else:
                plan.steps.append(residual_step(name, module, forwards[block_type]))

    return fragment


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


RESNET_FORWARDS: dict[type[nn.Module], BlockForward] = {
    BasicBlock: _basic_block_forward,
    Bottleneck: _bottleneck_forward,
}
# the Conv -> BN attribute pairs of each block's forward
RESNET_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}


def fold_resnet_blocks(plan: CanonizationPlan, model: nn.Module) -> None:
    """Plan fragment: fold the stem ``conv1 → bn1`` and each torchvision block's ``convK → bnK``
    (the block's code, not registration order; ``downsample`` is an ``nn.Sequential``)."""
    modules = dict(model.named_modules())
    for name, module in modules.items():
        where = f"{name}." if name else ""
        pairs: tuple[tuple[str, str], ...] = ()
        if isinstance(module, ResNet):
            pairs = (("conv1", "bn1"),)
        block_type = own_forward_type(module, RESNET_PAIRS)
        if block_type is not None:
            pairs = RESNET_PAIRS[block_type]
        for conv, norm in pairs:
            add_left_fold(plan, where + conv, modules[where + conv], where + norm, modules[where + norm])


class ResNetCanonizer(CompositeCanonizer):
    """torchvision ResNet, ResNeXt and Wide ResNet: fold every Conv → BN, explicit residual ``Sum``.

    Folded pairs follow the blocks' code, not registration order: the stem ``conv1 → bn1``, each
    block's ``convK → bnK`` and ``downsample.0 → downsample.1``. ``fold=False`` is the structural
    arm (the baseline of Pahde et al. 2023): residual ``Sum`` modules only, every BN kept and
    reported.
    """

    def __init__(self, fold: bool = True) -> None:
        super().__init__(
            "resnet",
            structure=[explicit_residuals(RESNET_FORWARDS)],
            folds=[fold_resnet_blocks, fold_sequential_pairs],
            unreached="not the output of a ResNet block's Conv (conv1/2/3, downsample.0)",
            fold=fold,
        )
