"""The right fold: a BatchNorm before the Linear/Conv layers it feeds (BN → Linear/Conv).

Merging right (canonization.md §2.2) scales the *input* channels, ``W'[:, c] = W[:, c]·s_c``, and
adds the shift's contribution to the bias: exactly for Linear and unpadded convs, through a
border-dependent bias table inside the layer (``BiasMapConvNd``) for zero-padded ones. Grouped
convolutions are refused with a reason, and so is a BatchNorm subclass with its own ``forward``
or with children: a right fold would move its affine map past its hidden activation
(``norm_act.right_fold_norm_problem``). ``fold_right_into`` is the one implementation of that
fold: ``FoldBatchNormRight`` (whole BNs, the ``auto`` canonizer) and ``_merge_right``'s
``FoldSliceRight`` (BN slices into chosen input columns, thresholded ReLUs: DenseNet, Relation
Network) both call it. ``hooked_bias_map=True`` makes a zero-padded conv a ``HookedBiasMapConvNd``
instead: the same function, with the shift map in a forward hook that LRP rules do not see, as
in Pahde et al.'s code (the ``densenet.<variant>.paper`` canonizers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from xaisearch.canonize.base import SurgeryStep, swap_tensor
from xaisearch.canonize.fold_left import layer_bias, layer_weight
from xaisearch.canonize.norm_act import right_fold_norm_problem
from xaisearch.canonize.plan import BatchNorm, IdentityBatchNorm, batchnorm_affine, norm_problem

_CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _tap_ranges(taps: int) -> torch.Tensor:
    """0/1 rows for every contiguous run ``[a, b]`` of kernel taps (ordered by ``a``, then ``b``), then
    an empty row: the taps an output position can see inside the input along one dimension."""
    rows = [[float(a <= k <= b) for k in range(taps)] for a in range(taps) for b in range(a, taps)]
    return torch.tensor(rows + [[0.0] * taps], dtype=torch.float64)


def _left_padding(conv: nn.modules.conv._ConvNd, dim: int) -> int:
    """Zeros ``conv`` pads before the input along spatial dimension ``dim``."""
    if isinstance(conv.padding, str):
        return conv.dilation[dim] * (conv.kernel_size[dim] - 1) // 2 if conv.padding == "same" else 0
    return conv.padding[dim]


class _BiasMap(nn.modules.conv._ConvNd):
    """Base of a zero-padded Conv that received a BN from the right.

    In the original network the padded border sees zeros *after* the BN, so the BN shift ``t``
    only reaches an output through the taps that lie inside the input: the bias varies near the
    border. Along each dimension the taps an output position sees form one contiguous run, so
    every position's bias is an entry of a table over (run along dim 1, run along dim 2, …):
    ``bias[o, r1, r2] = b_o + Σ_{c, k ∈ r1×r2} W[o, c, k]·t_c``. The table is this layer's own
    ``bias`` parameter and ``forward`` looks up each position's entry for the actual input size
    (any stride, dilation, 'same' padding). So the map is inside the computation zennit rules
    recompute, and parameter modifiers (``zero_params=['bias']``, z⁺ clamps, γ) act on each
    output neuron's true bias, exactly as for an unpadded fold.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dims = len(self.kernel_size)  # zero padding only (needs_bias_map): the plain functional conv
        output = _CONVOLUTIONS[dims](input, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        return output + self.bias_map(tuple(input.shape[-dims:]), tuple(output.shape[-dims:]))

    def bias_map(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> torch.Tensor:
        """The bias of every output position, ``(out_channels, *out_size)``."""
        return self._look_up(cast(torch.Tensor, self.bias), in_size, out_size)  # set by _bias_map_conv

    def _look_up(self, table: torch.Tensor, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> torch.Tensor:
        """Each output position's entry of ``table`` (out_channels, *runs): its run of taps inside the input."""
        index: list[torch.Tensor] = []
        device = table.device
        for dim, (length, outputs) in enumerate(zip(in_size, out_size)):
            taps = self.kernel_size[dim]
            start = torch.arange(outputs, device=device) * self.stride[dim] - _left_padding(self, dim)
            position = start[:, None] + torch.arange(taps, device=device) * self.dilation[dim]
            valid = ((position >= 0) & (position < length)).int()
            first, last = valid.argmax(dim=1), taps - 1 - valid.flip(1).argmax(dim=1)
            run = first * taps - first * (first - 1) // 2 + (last - first)  # row of [first, last] in _tap_ranges
            run = torch.where(valid.any(dim=1), run, taps * (taps + 1) // 2)
            index.append(run.view([-1 if d == dim else 1 for d in range(len(in_size))]))
        key: tuple[slice | torch.Tensor, ...] = (slice(None), *index)
        return table[key]


class BiasMapConv1d(_BiasMap, nn.Conv1d):
    """``nn.Conv1d`` plus the border correction of a BN folded in from the right."""


class BiasMapConv2d(_BiasMap, nn.Conv2d):
    """``nn.Conv2d`` plus the border correction of a BN folded in from the right."""


class BiasMapConv3d(_BiasMap, nn.Conv3d):
    """``nn.Conv3d`` plus the border correction of a BN folded in from the right."""


BIAS_MAP_TYPES: dict[type[nn.Module], type[_BiasMap]] = {
    nn.Conv1d: BiasMapConv1d,
    nn.Conv2d: BiasMapConv2d,
    nn.Conv3d: BiasMapConv3d,
}


class _HookedBiasMap(_BiasMap):
    """A zero-padded Conv that received a BN from the right, with the BN shift outside LRP's view.

    Pahde et al.'s formulation (``SequentialMergeBatchNormtoRight``, canonization.md §2.2, §7.4):
    the conv keeps its own ``bias`` (``None`` for DenseNet's ``conv2``) and the whole shift map
    ``Σ_{c, k valid} W[o, c, k]·t_c``, interior and border alike, is added by a forward hook. The
    module computes the same function as a ``BiasMapConvNd``, but zennit's rules recompute
    ``module.forward``, which hooks bypass: their ``z`` holds no part of the shift, and parameter
    modifiers never touch it. The map is the buffer ``shift_table`` (the ``_BiasMap`` table over
    runs of taps), and the hook is this module's own, put first among its forward hooks, so every
    later hook (zennit's, a user's) sees the full output.
    """

    shift_table: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dims = len(self.kernel_size)  # zero padding only (needs_bias_map): the plain functional conv
        bias = cast("torch.Tensor | None", self.bias)
        return _CONVOLUTIONS[dims](input, self.weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def bias_map(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> torch.Tensor:
        """The hooked shift of every output position, ``(out_channels, *out_size)`` (no own bias)."""
        return self._look_up(self.shift_table, in_size, out_size)


def _add_hooked_shift(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """The forward hook of a ``HookedBiasMapConvNd``: its output plus the BN shift map."""
    conv = cast(_HookedBiasMap, module)
    dims = len(conv.kernel_size)
    return output + conv.bias_map(tuple(args[0].shape[-dims:]), tuple(output.shape[-dims:]))


class HookedBiasMapConv1d(_HookedBiasMap, nn.Conv1d):
    """``nn.Conv1d`` plus a right-folded BN's shift map, added by a forward hook (hidden from LRP rules)."""


class HookedBiasMapConv2d(_HookedBiasMap, nn.Conv2d):
    """``nn.Conv2d`` plus a right-folded BN's shift map, added by a forward hook (hidden from LRP rules)."""


class HookedBiasMapConv3d(_HookedBiasMap, nn.Conv3d):
    """``nn.Conv3d`` plus a right-folded BN's shift map, added by a forward hook (hidden from LRP rules)."""


HOOKED_BIAS_MAP_TYPES: dict[type[nn.Module], type[_HookedBiasMap]] = {
    nn.Conv1d: HookedBiasMapConv1d,
    nn.Conv2d: HookedBiasMapConv2d,
    nn.Conv3d: HookedBiasMapConv3d,
}


def needs_bias_map(layer: nn.Module) -> bool:
    """Whether a BN folded right into ``layer`` needs a border bias map: a zero-padded conv."""
    if not isinstance(layer, nn.modules.conv._ConvNd) or layer.padding_mode != "zeros":
        return False  # Linear; reflect/replicate/circular padding pads BN outputs, so the shift is exact
    if isinstance(layer.padding, str):
        return layer.padding == "same"
    return any(p > 0 for p in layer.padding)


def right_fold_layer_problem(layer: nn.Module) -> str | None:
    """Why no BN (or per-channel affine map) can be folded into ``layer`` from the right, or ``None``."""
    if isinstance(layer, _BiasMap):
        return f"it feeds a {type(layer).__name__}, which already holds a merged BatchNorm's bias map"
    if type(layer) not in (nn.Linear, *BIAS_MAP_TYPES):
        return f"it feeds a {type(layer).__name__}; merging to the right supports Linear and Conv1d/2d/3d only"
    groups = getattr(layer, "groups", 1)
    if groups != 1:
        return f"it feeds a grouped convolution (groups={groups}); merging to the right needs groups=1"
    return None


def right_fold_problem(norm: nn.Module, layer: nn.Module) -> str | None:
    """Why ``norm`` cannot be folded into ``layer``, which it feeds, or ``None`` if it can."""
    problem = norm_problem(norm) or right_fold_norm_problem(norm) or right_fold_layer_problem(layer)
    if problem is not None:
        return problem
    inputs = layer_weight(layer).shape[1]
    features = cast(BatchNorm, norm).num_features
    return f"{features} channels, but the layer after it takes {inputs} inputs" if inputs != features else None


def folded_right(
    layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor, own_bias: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``layer`` with the per-input-channel map ``x ↦ s·x + t`` before it folded in.

    ``scale``/``shift`` (float64) have one entry per input channel of ``layer``. The bias is a
    vector for Linear and unpadded convs, and the ``BiasMapConvNd`` table (``_BiasMap``) for a
    zero-padded conv (``needs_bias_map``). ``own_bias=False``: leave ``layer``'s own bias out
    (the shift's contribution alone, for a ``HookedBiasMapConvNd`` that keeps its bias apart).
    """
    weight = layer_weight(layer).detach()
    layer_b = layer_bias(layer) if own_bias else None
    dtype = weight.dtype
    view = (1, -1) + (1,) * (weight.dim() - 2)
    taps = (weight.double() * shift.view(view)).sum(dim=1)  # (out, *kernel): each tap's share of the shift
    bias = layer_b.detach().double() if layer_b is not None else taps.new_zeros(taps.shape[0])
    new_weight = weight * scale.to(dtype).view(view)
    if not needs_bias_map(layer):
        return new_weight, (bias + taps.reshape(taps.shape[0], -1).sum(dim=1)).to(dtype)
    table = taps
    for size in taps.shape[1:]:  # sum the taps over every run: (out, *kernel) -> (out, *runs)
        table = torch.tensordot(table, _tap_ranges(size).to(table.device), dims=([1], [1]))
    table = table + bias.view(-1, *([1] * (table.dim() - 1)))
    return new_weight, table.to(dtype)


def fold_right_into(
    parent: nn.Module,
    key: str,
    layer: nn.Module,
    scale: torch.Tensor,
    shift: torch.Tensor,
    hooked_bias_map: bool = False,
) -> Callable[[], None]:
    """Fold ``x ↦ s·x + t`` (per input channel) into ``layer`` = ``parent.<key>``; return its exact undo.

    Linear and unpadded convs get new ``weight``/``bias`` objects (swapped in and back by
    identity); a zero-padded conv is replaced in ``parent`` by a ``BiasMapConvNd`` (with
    ``hooked_bias_map``: a ``HookedBiasMapConvNd``, Pahde et al.'s hook that LRP rules do not see)
    and the undo puts the original object back. Atomic: on an error nothing is changed.
    """
    if needs_bias_map(layer):
        conv = cast(nn.modules.conv._ConvNd, layer)  # needs_bias_map: a conv
        if hooked_bias_map:
            weight, table = folded_right(layer, scale, shift, own_bias=False)
            replacement: _BiasMap = _hooked_bias_map_conv(conv, weight, table)
        else:
            replacement = _bias_map_conv(conv, *folded_right(layer, scale, shift))
        parent._modules[key] = replacement

        def restore_module() -> None:
            if parent._modules.get(key) is replacement:
                parent._modules[key] = layer

        return restore_module
    weight, bias = folded_right(layer, scale, shift)
    old_weight = swap_tensor(layer, "weight", weight)
    try:
        old_bias = swap_tensor(layer, "bias", bias)
    except BaseException:
        swap_tensor(layer, "weight", old_weight)
        raise

    def restore_tensors() -> None:
        swap_tensor(layer, "weight", old_weight)
        swap_tensor(layer, "bias", old_bias)

    return restore_tensors


class FoldBatchNormRight(SurgeryStep):
    """Fold ``norm`` into the Linear/Conv layers it feeds (``W'[:, c] = W[:, c]·s_c``), then make it the identity.

    Linear and unpadded (or non-zero-padded) convs absorb the shift exactly in their bias. A
    zero-padded conv is replaced, in its parent, by a ``BiasMapConvNd`` that carries the border
    correction; ``remove()`` puts the original conv object back. Reads the layers' weights at
    ``register()`` time, so it composes with a left fold registered before it.
    """

    def __init__(self, norm: BatchNorm, norm_name: str, layers: list[tuple[str, nn.Module, nn.Module]]) -> None:
        self.norm = norm
        self.norm_name = norm_name
        self.layers = layers  # (name, parent, layer)
        names = ", ".join(name for name, _, _ in layers)
        maps = [
            f"{name} → {BIAS_MAP_TYPES[type(layer)].__name__}" for name, _, layer in layers if needs_bias_map(layer)
        ]
        self.description = f"{norm_name}: BatchNorm folded right into {names}" + (
            f" (replaced, for the border bias map: {', '.join(maps)})" if maps else ""
        )
        self._identity = IdentityBatchNorm(norm, norm_name)
        self._undo: list[Callable[[], None]] = []

    def register(self) -> None:
        scale, shift = batchnorm_affine(self.norm)
        try:
            for name, parent, layer in self.layers:
                self._undo.append(fold_right_into(parent, name.rsplit(".", 1)[-1], layer, scale, shift))
            self._identity.register()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        self._identity.remove()
        while self._undo:
            self._undo.pop()()


def _conv_like(conv: nn.modules.conv._ConvNd, make: Callable[..., Any], bias: bool, weight: torch.Tensor) -> Any:
    """A convolution of class ``make`` with ``conv``'s hyper-parameters, mode and user hooks and
    ``weight``, built on the meta device so that no weights are allocated or initialised twice."""
    # the classes take nn.ConvNd's constructor; _ConvNd's own signature differs
    new = make(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=bias,
        padding_mode=conv.padding_mode,
        device="meta",
    )
    new.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    new.train(conv.training)
    for key, value in vars(conv).items():  # keep user hooks firing while the replacement stands in
        if key.startswith(("_forward_hooks", "_forward_pre_hooks")):
            setattr(new, key, type(value)(value))
    return new


def _bias_map_conv(conv: nn.modules.conv._ConvNd, weight: torch.Tensor, table: torch.Tensor) -> _BiasMap:
    """A ``BiasMapConvNd`` with ``conv``'s hyper-parameters and hooks and ``table`` as its ``bias``."""
    new = cast(_BiasMap, _conv_like(conv, BIAS_MAP_TYPES[type(conv)], True, weight))
    new.bias = nn.Parameter(table, requires_grad=conv.weight.requires_grad)
    return new


def _hooked_bias_map_conv(conv: nn.modules.conv._ConvNd, weight: torch.Tensor, table: torch.Tensor) -> _HookedBiasMap:
    """A ``HookedBiasMapConvNd`` with ``conv``'s hyper-parameters, hooks and own bias (a copy), ``weight``,
    and the shift ``table`` as its buffer, added by its own forward hook ahead of every other."""
    own_bias = layer_bias(conv)
    new = cast(_HookedBiasMap, _conv_like(conv, HOOKED_BIAS_MAP_TYPES[type(conv)], own_bias is not None, weight))
    if own_bias is not None:
        new.bias = nn.Parameter(own_bias.detach().clone(), requires_grad=own_bias.requires_grad)
    new.register_buffer("shift_table", table)
    new.register_forward_hook(_add_hooked_shift, prepend=True)
    return new
