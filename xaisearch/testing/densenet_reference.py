"""Pahde et al.'s DenseNet canonizations, as their own code presents them to LRP, rewritten for checks.

An independent statement of the reference formulation (``frederikpahde/xai-canonization``,
``quantus_evaluation/canonizers/densenet.py`` and ``densenet_untangle.py``), written from reading
it, against which ``densenet.<variant>.paper`` is tested (``tests/canonize/test_densenet_paper.py``)
and measured (``bench/densenet_paper_rules.py``). It shares no code with ``xaisearch.canonize``:
the folds are written out again, and the reference's *mechanisms* are kept, because they are
what decides what zennit's rules see:

* **thresholded ReLU** = a forward pre-hook on the existing ``nn.ReLU`` that keeps its input, and
  a forward hook that recomputes the output from the kept input, ``where(s·x + t > 0, x, −t/s)``.
  The output then bypasses the node zennit hooks its rule on, so the plain gradient (the
  active-unit mask) crosses the ReLU, whatever rule a composite maps to it;
* **BN merged right into a zero-padded conv** = weight columns scaled, the conv's own bias left
  as it was, and the whole shift map ``Σ_{c, k valid} W[o, c, k]·t_c`` added by a forward hook on
  the conv. zennit's rules recompute ``module.forward``, so they never see the map. Here the map
  is computed for each input as the conv of a constant image of the shifts (the reference expands
  a precomputed kernel-sized map instead: the same numbers);
* **untangled** = a new module: per-consumer copies of every ``conv2`` and transition conv with
  the consumer's BN slice folded left, the stem's per-consumer BN slices merged right through
  hooked thresholds, and functional ``F.relu``, ``F.avg_pool2d`` and ``F.adaptive_avg_pool2d``,
  which no rule reaches.

The head of ``thresh_seq``/``seq_thresh`` is the reference's ``DenseNetAdaptiveAvgPoolCanonizer``:
``nn.ReLU`` and ``nn.AdaptiveAvgPool2d(1)`` modules appended to ``features``. Folds are computed
in float64 and written in the model's dtype.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition

if TYPE_CHECKING:
    from xaisearch.explain.config import ExplainerConfig

ReferenceVariant = Literal["thresh_seq", "seq_thresh", "untangled"]
REFERENCE_VARIANTS: tuple[ReferenceVariant, ...] = ("thresh_seq", "seq_thresh", "untangled")


def reference_canonized(model: DenseNet, variant: ReferenceVariant) -> nn.Module:
    """A new module computing ``model`` (eval mode) as the reference's ``variant`` canonizes it.

    ``model`` is not changed. The result carries the reference's hooks for good: explain it with
    any zennit composite *without* a canonizer.
    """
    if model.training:
        raise ValueError("reference_canonized needs a model in eval mode")
    if variant == "untangled":
        return _Untangled(model).eval()
    if variant not in ("thresh_seq", "seq_thresh"):
        raise ValueError(f"unknown reference variant {variant!r}; choose one of {REFERENCE_VARIANTS}")
    return _threshold_canonized(model, variant).eval()


# --- the arithmetic ------------------------------------------------------------------------------


def _scale_shift(norm: nn.BatchNorm2d, channels: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    mean = cast(torch.Tensor, norm.running_mean).double()[channels]
    var = cast(torch.Tensor, norm.running_var).double()[channels]
    scale = norm.weight.detach().double()[channels] / torch.sqrt(var + norm.eps)
    return scale, norm.bias.detach().double()[channels] - mean * scale


def _to_identity(norm: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        cast(torch.Tensor, norm.running_mean).zero_()
        cast(torch.Tensor, norm.running_var).fill_(1.0)
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    norm.eps = 0.0


def _fold_left(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``conv`` followed by the affine map ``(scale, shift)`` per output channel, as one conv."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((weight * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter((bias * scale + shift).to(dtype))


def _fold_right(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor, columns: slice = slice(None)) -> None:
    """The per-input-channel map ``(scale, shift)`` on input ``columns``, then ``layer``, as one layer.

    Linear and unpadded convs take the shift into their bias. A zero-padded conv keeps its bias
    and gets the reference's forward hook that adds the shift map (which LRP rules do not see)."""
    original = cast(torch.Tensor, layer.weight).detach().double()
    dtype = cast(torch.Tensor, layer.weight).dtype
    view = (1, -1) + (1,) * (original.dim() - 2)
    weight = original.clone()
    weight[:, columns] = weight[:, columns] * scale.view(view)
    layer.weight = nn.Parameter(weight.to(dtype))
    full_shift = torch.zeros(original.shape[1], dtype=torch.float64)
    full_shift[columns] = shift
    padded = isinstance(layer, nn.Conv2d) and any(p != 0 for p in cast(tuple[int, int], layer.padding))
    if not padded:
        bias = cast("torch.Tensor | None", layer.bias)
        old = bias.detach().double() if bias is not None else torch.zeros(original.shape[0], dtype=torch.float64)
        contribution = (original * full_shift.view(view)).reshape(original.shape[0], -1).sum(dim=1)
        layer.bias = nn.Parameter((old + contribution).to(dtype))
        return
    conv = cast(nn.Conv2d, layer)
    shift_weight = original.to(dtype)  # the map uses the weights before the fold
    shift_image = full_shift.to(dtype).view(1, -1, 1, 1)

    def add_shift_map(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        height, width = args[0].shape[-2:]
        image = shift_image.to(output.device).expand(1, -1, height, width)
        shift_map = F.conv2d(image, shift_weight.to(output.device), None, conv.stride, conv.padding, conv.dilation)
        return output + shift_map

    conv.register_forward_hook(add_shift_map)


def _threshold(relu: nn.ReLU, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """The reference's thresholded ReLU: keep the input in a pre-hook, recompute the output from it."""
    kept: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        kept["input"] = args[0].clone()

    def thresholded(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = kept.pop("input")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        s, t = scale.to(x.dtype).view(shape), shift.to(x.dtype).view(shape)
        return torch.where(s * x + t > 0, x, -t / s)

    relu.register_forward_pre_hook(keep)
    relu.register_forward_hook(thresholded)


def _no_inplace(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False


# --- ThreshSeq and SeqThresh ---------------------------------------------------------------------


def _blocks(model: DenseNet) -> list[tuple[_DenseBlock, nn.Module, nn.ReLU, nn.Module]]:
    """Each dense block with the BN, ReLU and layer of its exit (next transition or the head)."""
    children = list(model.features.children())
    blocks = []
    for index, child in enumerate(children):
        if isinstance(child, _DenseBlock):
            following = children[index + 1]
            if isinstance(following, _Transition):
                blocks.append((child, following.norm, cast(nn.ReLU, following.relu), following.conv))
            else:
                blocks.append((child, following, cast(nn.ReLU, model.features.final_relu), model.classifier))
    return blocks


def _left_folds(model: DenseNet) -> None:
    """The reference's checked sequential merge: ``conv0 → norm0`` and every ``conv1 → norm2``."""
    pairs = [(model.features.conv0, model.features.norm0)]
    for block, *_ in _blocks(model):
        pairs += [(layer.conv1, layer.norm2) for layer in cast(list[_DenseLayer], list(block.values()))]
    for conv, norm in pairs:
        _fold_left(conv, *_scale_shift(norm))
        _to_identity(norm)


def _threshold_canonized(model: DenseNet, variant: ReferenceVariant) -> nn.Module:
    model = copy.deepcopy(model)
    _no_inplace(model)
    model.features.add_module("final_relu", nn.ReLU())
    model.features.add_module("final_pool", nn.AdaptiveAvgPool2d((1, 1)))
    if variant == "seq_thresh":
        _left_folds(model)
    chains: list[tuple[nn.Module, nn.ReLU, nn.Module]] = []
    for block, norm, relu, layer in _blocks(model):
        for dense in cast(list[_DenseLayer], list(block.values())):
            chains += [(dense.norm1, dense.relu1, dense.conv1), (dense.norm2, dense.relu2, dense.conv2)]
        chains.append((norm, relu, layer))
    for norm, relu, layer in chains:  # in SeqThresh, norm2 is already the identity: τ = 0
        scale, shift = _scale_shift(cast(nn.BatchNorm2d, norm))
        _fold_right(layer, scale, shift)
        _threshold(relu, scale, shift)
        _to_identity(cast(nn.BatchNorm2d, norm))
    if variant == "thresh_seq":
        _left_folds(model)  # conv1 → norm2 merges an identity BN: nothing changes
    return nn.Sequential(OrderedDict(features=model.features, flatten=nn.Flatten(), classifier=model.classifier))


# --- Untangled ------------------------------------------------------------------------------------


class _Untangled(nn.Module):
    """The reference's ``UntangledDenseNet`` after ``UntanglingCanonizer`` (canonization.md §7.5).

    The convolutions are kept in plain lists for the forward and registered once in ``layers``,
    so that composites reach them."""

    def __init__(self, model: DenseNet) -> None:
        super().__init__()
        model = copy.deepcopy(model)
        _no_inplace(model)
        features = list(model.features.children())
        _fold_left(model.features.conv0, *_scale_shift(model.features.norm0))
        _to_identity(model.features.norm0)
        self.stem = nn.Sequential(*features[:4])  # conv0, norm0 (identity), relu0, pool0
        blocks = [cast(list[_DenseLayer], list(c.values())) for c in features if isinstance(c, _DenseBlock)]
        transitions = [child for child in features if isinstance(child, _Transition)]
        if len(blocks) < 2 or len(transitions) != len(blocks) - 1:
            raise ValueError("the reference untangles DenseNets of two dense blocks or more")
        exits = [transition.norm for transition in transitions] + [features[-1]]  # the last: norm5
        self.conv1: list[list[nn.Conv2d]] = []  # per block: each layer's conv1 (norm2 folded left)
        self.conv2: list[list[list[nn.Conv2d]]] = []  # per block, per layer: a copy per later consumer
        self.transition: list[list[nn.Conv2d]] = []  # per transition: a copy per consumer of the next block
        self.pools: list[tuple[Any, Any]] = []  # each transition's (kernel_size, stride)
        for index, layers in enumerate(blocks):
            consumers = [cast(nn.BatchNorm2d, n) for n in [layer.norm1 for layer in layers] + [exits[index]]]
            width = layers[0].norm1.num_features
            self.conv1.append([])
            self.conv2.append([])
            for position, layer in enumerate(layers):
                _fold_left(layer.conv1, *_scale_shift(layer.norm2))
                self.conv1[-1].append(layer.conv1)
                growth = layer.conv2.out_channels
                channels = slice(width + position * growth, width + (position + 1) * growth)
                self.conv2[-1].append([_left_folded_copy(layer.conv2, c, channels) for c in consumers[position + 1 :]])
            if index < len(transitions):
                transition = transitions[index]
                following = [layer.norm1 for layer in blocks[index + 1]] + [exits[index + 1]]
                outputs = slice(0, transition.conv.out_channels)
                self.transition.append([_left_folded_copy(transition.conv, c, outputs) for c in following])
                pool = cast(nn.AvgPool2d, transition.pool)
                self.pools.append((pool.kernel_size, pool.stride))
        self.initial: list[nn.ReLU] = []  # block 1's consumers: a hooked threshold each on the stem channels
        width = blocks[0][0].norm1.num_features
        first_consumers = [layer.norm1 for layer in blocks[0]] + [exits[0]]
        for position, consumer in enumerate(first_consumers):
            scale, shift = _scale_shift(cast(nn.BatchNorm2d, consumer), slice(0, width))
            relu = nn.ReLU()
            _threshold(relu, scale, shift)
            self.initial.append(relu)
            last = position == len(first_consumers) - 1
            for target in self.transition[0] if last else [self.conv1[0][position]]:
                _fold_right(target, scale, shift, slice(0, width))
        convolutions = [conv for block in self.conv2 for copies in block for conv in copies]
        convolutions += [conv for block in self.conv1 for conv in block]
        convolutions += [conv for copies in self.transition for conv in copies]
        self.layers = nn.ModuleList([*self.initial, *convolutions])
        self.classifier = model.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        inputs = [relu(stem) for relu in self.initial]
        for index, (convs1, convs2) in enumerate(zip(self.conv1, self.conv2)):
            received = [[tensor] for tensor in inputs]
            for position, (conv1, copies) in enumerate(zip(convs1, convs2)):
                hidden = F.relu(conv1(torch.cat(received[position], 1)))
                for offset, conv2 in enumerate(copies):
                    received[position + 1 + offset].append(F.relu(conv2(hidden)))
            out = torch.cat(received[-1], 1)
            if index < len(self.transition):
                kernel, stride = self.pools[index]
                inputs = [F.relu(F.avg_pool2d(conv(out), kernel, stride)) for conv in self.transition[index]]
        pooled = F.adaptive_avg_pool2d(F.relu(out), (1, 1))
        return self.classifier(torch.flatten(pooled, 1))


def _left_folded_copy(conv: nn.Conv2d, norm: nn.BatchNorm2d, channels: slice) -> nn.Conv2d:
    """A copy of ``conv`` with the ``channels`` of ``norm`` (which reads its output) folded left."""
    copied = copy.deepcopy(conv)
    _fold_left(copied, *_scale_shift(norm, channels))
    return copied


# --- comparing attributions -----------------------------------------------------------------------

COMPOSITES: tuple[str, ...] = ("epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1")


def zennit_composite(name: str, canonizers: list[Any], low: float, high: float) -> Any:
    """zennit's own ``EpsilonPlus``, ``EpsilonGammaBox(low, high)`` or ``EpsilonAlpha2Beta1``, defaults kept."""
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus

    if name == "epsilon_plus":
        return EpsilonPlus(canonizers=canonizers)
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
    if name == "epsilon_alpha2_beta1":
        return EpsilonAlpha2Beta1(canonizers=canonizers)
    raise ValueError(f"unknown composite {name!r}; choose one of {COMPOSITES}")


def equivalent_config(
    model: DenseNet, name: str, canonizer: str, low: float, high: float, input_shape: tuple[int, ...]
) -> ExplainerConfig:
    """The ``ExplainerConfig`` whose composite (``explain.methods.build_composite``) is ``zennit_composite(name)``:
    zennit's rules and defaults on every conv (z⁺, γ = 0.25, α2β1), ε = 1e-6 on the classifier, and
    for ``epsilon_gamma_box`` the bounded rule on ``features.conv0``."""
    from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule
    from xaisearch.models.ref import ModelRef

    conv_rules = {
        "epsilon_plus": ("zplus", {}),
        "epsilon_gamma_box": ("gamma", {"gamma": 0.25}),
        "epsilon_alpha2_beta1": ("alpha_beta", {"alpha": 2.0}),
    }
    if name not in conv_rules:
        raise ValueError(f"unknown composite {name!r}; choose one of {COMPOSITES}")
    rule, params = conv_rules[name]
    convs = [key for key, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    first = FirstLayerRule(layer="features.conv0", rule="zbox", params={"low": low, "high": high})
    reference = ModelRef(name="densenet", num_classes=model.classifier.out_features, input_shape=input_shape)
    return ExplainerConfig(
        model=reference,
        canonizer=canonizer,
        groups=[
            GroupRule(name="convolutions", layers=convs, rule=rule, params=params),
            GroupRule(name="classifier", layers=["classifier"], rule="epsilon", params={"epsilon": 1e-6}),
        ],
        first_layer=first if name == "epsilon_gamma_box" else None,
    )


def attributions(model: nn.Module, composite: Any, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """zennit ``Gradient`` attributions of ``x`` for the classes ``target`` (one-hot output relevance),
    the model's parameter objects restored afterwards (zennit 1.0.0 swaps them, #237)."""
    from zennit.attribution import Gradient

    from xaisearch.integrity import preserved_state

    with torch.enable_grad(), preserved_state(model), Gradient(model, composite) as attributor:
        _, relevance = attributor(x.detach().clone(), lambda out: F.one_hot(target, out.shape[-1]).to(out.dtype))
    return relevance.detach()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity of two attribution batches."""
    return F.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1)
