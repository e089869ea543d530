"""DenseNet canonizers (torchvision ``DenseNet``; Pahde et al. 2023, canonization.md §7).

DenseNet is pre-activation: every ``norm1`` and transition ``norm`` acts on a functional
``torch.cat`` of earlier feature maps and is followed by ReLU → Conv, and the head calls
``F.relu`` and ``F.adaptive_avg_pool2d``. Only ``conv0 → norm0`` and ``conv1 → norm2`` can fold
left. The variants (registered as ``densenet.<variant>``):

* ``head_only``: the module-form head (ReLU and AdaptiveAvgPool2d as modules, so LRP's Pass and
  Norm attach; without them about 7 % of relevance leaks). The paper's baseline arm.
* ``thresh_seq``: head, then every BN → ReLU → Conv/Linear merged right through a thresholded
  ReLU (``norm1``, ``norm2``, transitions, ``norm5``), then ``norm0`` folded left. ``norm2``
  lands in the zero-padded 3×3 ``conv2``, which becomes a ``BiasMapConv2d`` whose border bias
  map is its own ``bias`` (the reference's forward hook was invisible to LRP rules, §7.4). The
  variant the reference code marks as reproducing the paper; the registry's default.
* ``seq_thresh``: head, ``norm0`` and every ``norm2`` folded left, then the remaining 62
  (densenet121) merged right through thresholds into unpadded 1×1 convs and the classifier: no
  bias maps.
* ``untangled`` (§7.5): no thresholds inside the blocks. Each ``conv2`` (and each transition
  ``conv``) gets one output group per later consumer, with that consumer's BN slice folded left
  into it, and the block forward routes each consumer its own groups. This is the reference's
  per-consumer ``conv2`` copies stacked into one module under the original name, so name-based
  rules attach and give the same relevance as separate copies (rules act per output channel).
  Only the stem's channels, which reach block 1 through max pooling, keep thresholded ReLUs.

``densenet.<variant>.paper`` (``paper_rules=True``; ``thresh_seq``, ``seq_thresh``, ``untangled``)
is the same surgery with LRP seeing what it sees in Pahde et al.'s own canonizers
(``quantus_evaluation/canonizers/densenet*.py``), so that attributions reproduce theirs:

* their thresholded ReLU is a pair of hooks that bypass zennit's rule: the plain gradient (the
  active-unit mask) crosses it, not ``Pass``. Here a ``PlainGradientThresholdedReLU``, which no
  composite maps;
* their shift map of a BN merged into a zero-padded conv is a forward hook, which zennit's rules
  do not recompute: here a ``HookedBiasMapConv2d`` (shift map in a forward hook, the conv's own
  ``bias`` visible as before);
* their untangled DenseNet calls ReLU and average pooling functionally, so they take no rule:
  here every ReLU and average pool of the untangled graph, the head's included, becomes a
  ``PlainGradient`` module, which no composite maps either.

``head_only`` has no paper form: it is already the reference's baseline arm.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition

from xaisearch.canonize._merge_right import FoldSliceRight, scale_shift, threshold_relu
from xaisearch.canonize.base import CanonizationPlan, Canonizer, ReplaceForward, StepSequence, SwapChild, child_module
from xaisearch.canonize.catalog import DENSENET_PAPER_VARIANTS, DENSENET_VARIANTS, DenseNetVariant
from xaisearch.canonize.fold_left import add_left_fold, layer_weight, scaled_layer
from xaisearch.canonize.fold_right import (
    BIAS_MAP_TYPES,
    HOOKED_BIAS_MAP_TYPES,
    needs_bias_map,
    right_fold_layer_problem,
)
from xaisearch.canonize.plan import BatchNorm, IdentityBatchNorm, batchnorm_names, report_unfolded

VARIANTS: tuple[DenseNetVariant, ...] = DENSENET_VARIANTS  # named in the torch-free catalog
PAPER_VARIANTS: tuple[DenseNetVariant, ...] = DENSENET_PAPER_VARIANTS
HEAD_RELU, HEAD_POOL = "head_relu", "head_pool"
NO_STATISTICS = "no running statistics (track_running_stats=False): its eval output depends on the batch"


class PlainGradient(nn.Module):
    """A ReLU or average pool as a call of its functional form, in a module no composite maps.

    zennit composites map modules by type (ReLU → ``Pass``, average pooling → ``Norm``); this
    one is neither type, so LRP crosses it by the plain gradient, as it crosses the functional
    ``F.relu``/``F.avg_pool2d``/``F.adaptive_avg_pool2d`` of Pahde et al.'s untangled DenseNet.
    """

    def __init__(self, function: Callable[..., torch.Tensor], **arguments: object) -> None:
        super().__init__()
        self.function, self.arguments = function, arguments

    @classmethod
    def of(cls, module: nn.Module) -> PlainGradient:
        """The functional form of an ``nn.ReLU``, ``nn.AvgPool2d`` or ``nn.AdaptiveAvgPool2d``."""
        if type(module) is nn.ReLU:
            return cls(F.relu)
        if type(module) is nn.AvgPool2d:
            names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
            return cls(F.avg_pool2d, **{name: getattr(module, name) for name in names})
        if type(module) is nn.AdaptiveAvgPool2d:
            return cls(F.adaptive_avg_pool2d, output_size=module.output_size)
        raise ValueError(f"a plain-gradient module replaces nn.ReLU or average pooling, found {type(module).__name__}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.function(input, **self.arguments)

    def extra_repr(self) -> str:
        return ", ".join([self.function.__name__] + [f"{key}={value}" for key, value in self.arguments.items()])


def _module_head_forward(self: DenseNet, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``DenseNet.forward`` with its functional ReLU and pooling as modules."""
    return self.classifier(torch.flatten(getattr(self, HEAD_POOL)(getattr(self, HEAD_RELU)(self.features(x))), 1))


def _untangled_block_forward(
    block: _DenseBlock, init_features: torch.Tensor, *, width: int, growth: int, shared_input: bool
) -> torch.Tensor:
    """``_DenseBlock.forward`` untangled: consumer j (each dense layer, then the block's exit)
    receives its own channel group from every producer, with its BN slice already folded in.
    ``shared_input``: the block input is the stem's, one tensor for all consumers."""
    layers = list(block.values())
    inputs = [init_features] * (len(layers) + 1) if shared_input else list(init_features.split(width, dim=1))
    if len(inputs) != len(layers) + 1:
        raise RuntimeError(f"untangled dense block expected {len(layers) + 1} input groups, got {len(inputs)}")
    received = [[features] for features in inputs]
    for index, layer in enumerate(layers):
        for offset, features in enumerate(layer(received[index]).split(growth, dim=1)):
            received[index + 1 + offset].append(features)
    return torch.cat(received[-1], 1)


def _widened(norms: list[BatchNorm], channels: slice) -> Callable[[nn.Module], nn.Module]:
    """A ``SwapChild`` factory: ``conv`` with one output group per BN, that BN's ``channels`` folded left."""

    def make(conv: nn.Module) -> nn.Module:
        if type(conv) is not nn.Conv2d or conv.groups != 1:  # a BiasMapConv2d's bias table would be lost
            raise ValueError(f"untangling widens an ungrouped nn.Conv2d, found {conv}")
        groups = [scaled_layer(conv.weight, conv.bias, *scale_shift(norm, channels)) for norm in norms]
        pair = tuple[int, int]  # an nn.Conv2d's hyper-parameters are pairs; torch types them as tuple[int, ...]
        wide = nn.Conv2d(
            conv.in_channels,
            conv.out_channels * len(norms),
            cast(pair, conv.kernel_size),
            cast(pair, conv.stride),
            cast("str | tuple[int, int]", conv.padding),
            cast(pair, conv.dilation),
            bias=True,
            padding_mode=conv.padding_mode,
            device="meta",
        )
        grad = conv.weight.requires_grad
        wide.weight = nn.Parameter(torch.cat([weight for weight, _ in groups]), grad)
        wide.bias = nn.Parameter(torch.cat([bias for _, bias in groups]), grad)
        return wide

    return make


@dataclass(frozen=True)
class _Slot:
    """A child addressed by its parent, so a step finds whatever an earlier step put there."""

    parent: nn.Module
    name: str
    path: str


@dataclass(frozen=True)
class _PreActivation:
    """BN → ReLU → Conv/Linear (through the head's average pool for ``norm5``)."""

    norm_name: str
    norm: BatchNorm
    relu: _Slot
    linear: _Slot


@dataclass(frozen=True)
class _Block:
    name: str
    block: _DenseBlock
    layers: list[tuple[str, _DenseLayer]]
    exit: _PreActivation  # the next transition's norm → relu → conv, or norm5 → head ReLU → classifier
    entry: _Slot | None  # the conv of the transition before it; None: fed by the stem

    def consumers(self) -> list[_PreActivation]:
        """Every BN that reads this block's concatenation: each layer's ``norm1``, then the exit."""
        return [_pre_activation(name, layer, "1") for name, layer in self.layers] + [self.exit]


def _pre_activation(name: str, layer: _DenseLayer, index: str) -> _PreActivation:
    return _PreActivation(
        f"{name}.norm{index}",
        getattr(layer, f"norm{index}"),
        _Slot(layer, f"relu{index}", f"{name}.relu{index}"),
        _Slot(layer, f"conv{index}", f"{name}.conv{index}"),
    )


def _dense_blocks(model: DenseNet) -> list[_Block]:
    """The dense blocks of ``model.features`` in data-flow order, with what feeds and reads them."""
    children = list(model.features.named_children())
    blocks, entry = [], None
    for index, (name, child) in enumerate(children):
        if isinstance(child, _Transition):
            if not isinstance(child.pool, nn.AvgPool2d) or child.pool.padding not in (0, (0, 0)):
                raise ValueError(f"features.{name}.pool must be an unpadded AvgPool2d, found {child.pool}")
            entry = _Slot(child, "conv", f"features.{name}.conv")
        if not isinstance(child, _DenseBlock):
            continue
        next_name, following = children[index + 1] if index + 1 < len(children) else ("", None)
        if isinstance(following, _Transition):
            block_exit = _PreActivation(
                f"features.{next_name}.norm",
                following.norm,
                _Slot(following, "relu", f"features.{next_name}.relu"),
                _Slot(following, "conv", f"features.{next_name}.conv"),
            )
        elif isinstance(following, BatchNorm):
            block_exit = _PreActivation(
                f"features.{next_name}",
                following,
                _Slot(model, HEAD_RELU, HEAD_RELU),
                _Slot(model, "classifier", "classifier"),
            )
        else:
            raise ValueError(f"features.{name} is followed by {type(following).__name__}, not a transition or norm5")
        layers = [(f"features.{name}.{key}", layer) for key, layer in child.items()]
        blocks.append(_Block(f"features.{name}", child, layers, block_exit, entry))
    if not blocks or not isinstance(getattr(model.features, "norm0", None), BatchNorm):
        raise ValueError("not a torchvision DenseNet layout: need features.conv0/norm0 and dense blocks")
    return blocks


def _merge_through_relu(
    chain: _PreActivation, description: str, paper: bool, channels: slice | None = None
) -> tuple[SwapChild, FoldSliceRight]:
    """The two steps of BN → ReLU → Linear merged right (canonization.md §2.3): the ReLU becomes
    the BN's thresholded ReLU and the BN (or its ``channels``) folds into the layer's columns.
    ``paper``: the threshold takes the plain gradient and a border map is hooked (module docstring)."""
    which = "" if channels is None else " on the stem channels"
    gradient = " (plain gradient)" if paper else ""
    relu = SwapChild(
        chain.relu.parent,
        chain.relu.name,
        threshold_relu(chain.norm, chain.norm.num_features, channels, plain_gradient=paper),
        f"{chain.relu.path}: thresholded ReLU{which} of {chain.norm_name}{gradient}",
    )
    columns = (slice(None),) if channels is None else [channels]
    merge = FoldSliceRight(
        chain.norm,
        chain.linear.parent,
        chain.linear.name,
        description,
        channels=channels,
        columns=columns,
        after_relu=True,
        hooked_bias_map=paper,
    )
    return relu, merge


def _threshold(plan: CanonizationPlan, chain: _PreActivation, paper: bool) -> None:
    """BN → ReLU → Linear becomes identity → ThresholdedReLU → Linear' (canonization.md §2.3)."""
    linear = child_module(chain.linear.parent, chain.linear.name)
    problem = NO_STATISTICS if chain.norm.running_mean is None else right_fold_layer_problem(linear)
    inputs = layer_weight(linear).shape[1] if problem is None else 0
    if problem is None and inputs != chain.norm.num_features:
        problem = f"{chain.norm.num_features} channels, but {chain.linear.path} takes {inputs} inputs"
    if problem is not None:
        plan.unfolded[chain.norm_name] = problem
        return
    border = ""
    if needs_bias_map(linear):
        kind = (HOOKED_BIAS_MAP_TYPES if paper else BIAS_MAP_TYPES)[type(linear)].__name__
        border = f" (becomes a {kind}: {'shift map in a forward hook' if paper else 'border bias map'})"
    relu, merge = _merge_through_relu(chain, f"{chain.norm_name}: merged right into {chain.linear.path}{border}", paper)
    identity = IdentityBatchNorm(chain.norm, chain.norm_name)
    plan.steps.append(StepSequence([relu, merge, identity], f"{merge.description}, through {chain.relu.path}"))
    plan.folded.append(chain.norm_name)


def _stem_and_norm2_left(plan: CanonizationPlan, model: DenseNet, blocks: list[_Block]) -> None:
    """Fold ``conv0 → norm0`` and every ``conv1 → norm2`` left: the only Conv → BN pairs of a DenseNet."""
    add_left_fold(plan, "features.conv0", model.features.conv0, "features.norm0", model.features.norm0)
    for name, layer in [layer for block in blocks for layer in block.layers]:
        add_left_fold(plan, f"{name}.conv1", layer.conv1, f"{name}.norm2", layer.norm2)


def _head_only(plan: CanonizationPlan, model: DenseNet, blocks: list[_Block], paper: bool) -> None:
    """The baseline arm: the module-form head (added for every variant) and nothing else."""


def _thresh_seq(plan: CanonizationPlan, model: DenseNet, blocks: list[_Block], paper: bool) -> None:
    """Every BN → ReLU → Conv/Linear merged right through a threshold, then ``norm0`` folded left."""
    for block in blocks:
        for name, layer in block.layers:
            _threshold(plan, _pre_activation(name, layer, "1"), paper)
            _threshold(plan, _pre_activation(name, layer, "2"), paper)
        _threshold(plan, block.exit, paper)
    add_left_fold(plan, "features.conv0", model.features.conv0, "features.norm0", model.features.norm0)


def _seq_thresh(plan: CanonizationPlan, model: DenseNet, blocks: list[_Block], paper: bool) -> None:
    """``norm0`` and every ``norm2`` folded left, then every block consumer merged right through a threshold.

    ``relu2`` stays a plain ReLU. The reference also thresholds it, with ``norm2`` already the
    identity (τ = 0): a ReLU under the plain gradient, where ``Pass`` gives the same relevance,
    since ``conv2``'s rule gives none to the zeros the ReLU outputs."""
    _stem_and_norm2_left(plan, model, blocks)
    for chain in [chain for block in blocks for chain in block.consumers()]:
        _threshold(plan, chain, paper)


def _plain_gradient_slots(model: DenseNet, blocks: list[_Block]) -> list[_Slot]:
    """Every ReLU and average pool of the untangled graph that no threshold takes: each layer's
    ``relu2``, ``relu1`` past block 1, the exits' ReLUs past block 1, the transition pools, the head pool."""
    slots = [_Slot(model, HEAD_POOL, HEAD_POOL)]
    for block in blocks:
        slots += [_Slot(layer, "relu2", f"{name}.relu2") for name, layer in block.layers]
        if block.entry is not None:  # block 1's consumers threshold the stem channels
            slots += [_Slot(layer, "relu1", f"{name}.relu1") for name, layer in block.layers] + [block.exit.relu]
            parent = block.entry.parent  # the transition before this block
            slots.append(_Slot(parent, "pool", block.entry.path.rsplit(".", 1)[0] + ".pool"))
    return slots


def _untangled(plan: CanonizationPlan, model: DenseNet, blocks: list[_Block], paper: bool) -> None:
    """Pahde et al.'s ``UntanglingCanonizer`` (canonization.md §7.5) as widened modules."""
    _stem_and_norm2_left(plan, model, blocks)
    consumers_by_block = [block.consumers() for block in blocks]
    missing = [c.norm_name for cs in consumers_by_block for c in cs if c.norm.running_mean is None]
    if missing:
        raise ValueError(f"densenet.untangled needs every BatchNorm's running statistics; missing in {missing}")
    for block, consumers in zip(blocks, consumers_by_block):
        width, growth = consumers[0].norm.num_features, block.layers[0][1].conv2.out_channels
        for index, (name, layer) in enumerate(block.layers):
            later = [c.norm for c in consumers[index + 1 :]]
            channels = slice(width + index * growth, width + (index + 1) * growth)
            plan.steps.append(
                SwapChild(
                    layer,
                    "conv2",
                    _widened(later, channels),
                    f"{name}.conv2: {len(later)} output groups, one per later consumer",
                )
            )
        stem_channels = slice(0, width)
        if block.entry is None:  # the stem reaches block 1 through max pooling: merge right, thresholded
            for c in consumers:
                description = f"{c.norm_name}[:{width}]: merged right into {c.linear.path}"
                relu, merge = _merge_through_relu(c, description, paper, stem_channels)
                plan.steps.append(StepSequence([relu, merge], merge.description))
        else:
            plan.steps.append(
                SwapChild(
                    block.entry.parent,
                    block.entry.name,
                    _widened([c.norm for c in consumers], stem_channels),
                    f"{block.entry.path}: {len(consumers)} output groups, one per consumer",
                )
            )
        forward = functools.partial(
            _untangled_block_forward, width=width, growth=growth, shared_input=block.entry is None
        )
        plan.steps.append(ReplaceForward(block.block, forward, {}, f"{block.name}: routes each consumer its groups"))
    for c in [c for consumers in consumers_by_block for c in consumers]:
        plan.steps.append(IdentityBatchNorm(c.norm, c.norm_name))
        plan.folded.append(c.norm_name)
    if paper:
        for slot in _plain_gradient_slots(model, blocks):
            description = f"{slot.path}: plain gradient (functional in the reference)"
            plan.steps.append(SwapChild(slot.parent, slot.name, PlainGradient.of, description))


VariantPlan = Callable[[CanonizationPlan, DenseNet, list[_Block], bool], None]
VARIANT_PLANS: dict[DenseNetVariant, VariantPlan] = {
    "head_only": _head_only,
    "thresh_seq": _thresh_seq,
    "seq_thresh": _seq_thresh,
    "untangled": _untangled,
}
UNREACHED: dict[DenseNetVariant, str] = {
    "head_only": "densenet.head_only is the baseline arm: BatchNorm stays, and LRP rules pass it"
}


class DenseNetCanonizer(Canonizer):
    """Canonizes a torchvision ``DenseNet`` in one of ``VARIANTS`` (module docstring)."""

    def __init__(self, variant: DenseNetVariant = "thresh_seq", paper_rules: bool = False) -> None:
        if variant not in VARIANT_PLANS:
            raise ValueError(f"unknown DenseNet canonizer variant {variant!r}; choose one of {VARIANTS}")
        if paper_rules and variant not in PAPER_VARIANTS:
            raise ValueError(
                f"densenet.{variant} has no paper_rules form (it is the reference's baseline arm already); "
                f"choose one of {PAPER_VARIANTS}"
            )
        self.variant, self.paper_rules = variant, paper_rules
        self.name = f"densenet.{variant}" + (".paper" if paper_rules else "")

    def __repr__(self) -> str:
        paper = ", paper_rules=True" if self.paper_rules else ""
        return f"{type(self).__name__}({self.variant!r}{paper})"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        if not isinstance(model, DenseNet):
            raise ValueError(f"canonizer {self.name!r} needs a torchvision DenseNet, got {type(model).__name__}")
        blocks = _dense_blocks(model)
        plan = CanonizationPlan(batchnorms=batchnorm_names(model))
        head = {HEAD_RELU: nn.ReLU(), HEAD_POOL: nn.AdaptiveAvgPool2d((1, 1))}
        plan.steps.append(
            ReplaceForward(model, _module_head_forward, head, "head: functional ReLU and average pooling as modules")
        )
        VARIANT_PLANS[self.variant](plan, model, blocks, self.paper_rules)
        report_unfolded(plan, UNREACHED.get(self.variant, "not reached by the canonizer"))
        return plan
