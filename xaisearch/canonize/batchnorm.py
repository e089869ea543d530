"""BatchNorm folding into the adjacent linear map: merge left (Linear/Conv → BN) and right (BN → Linear/Conv).

In eval mode BN on channel c is the affine map ``s_c·x + t_c`` with
``s_c = γ_c / sqrt(σ²_c + ε)`` and ``t_c = β_c − μ_c·s_c``. Folded into the preceding
Linear/Conv: ``W'[c] = s_c·W[c]`` and ``b'_c = s_c·b_c + t_c``; this is exact for any padding,
stride, dilation or grouping because BN acts after the linear map. The BN then becomes the
identity (μ=0, σ²=1, γ=1, β=0, **ε=0**): zennit 0.5.1 keeps ε and leaves an error of 1e-4–1e-3
relative; with ε=0 the identity is exact. ``s`` and ``t`` are computed in float64; the weight
product runs in the weight's dtype (one more rounding, ≤ 6e-8 relative in float32, for a fold
five times faster on large models than a float64 round trip of every weight).

Merging right (canonization.md §2.2) scales the *input* channels, ``W'[:, c] = W[:, c]·s_c``, and
adds the shift's contribution to the bias: exactly for Linear and unpadded convs, through a
border-dependent bias table inside the layer (``BiasMapConvNd``) for zero-padded ones. Grouped
convolutions are refused with a reason. ``fold_right_into`` is the one implementation of that
fold: ``FoldBatchNormRight`` (whole BNs, the ``auto`` canonizer) and ``_merge_right``'s
``FoldSliceRight`` (BN slices into chosen input columns, thresholded ReLUs: DenseNet, Relation
Network) both call it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from xaisearch.canonize.base import SurgeryStep, swap_tensor

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
LINEAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def batchnorm_affine(norm: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scale ``s`` and shift ``t`` of ``norm`` in eval mode, in float64."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    mean = norm.running_mean.detach().double()
    var = norm.running_var.detach().double()
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    return scale, beta - mean * scale


def scaled_layer(
    weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale · (W x + b) + shift`` as one layer: ``(scale · W, scale · b + shift)`` per output channel.

    The one arithmetic of every left fold. The weight product runs in ``weight``'s dtype (it runs
    on every explanation call; float64 made resnet50's folds 5x slower), the bias in float64.
    """
    if weight.shape[0] != scale.shape[0]:
        raise ValueError(
            f"cannot fold a BatchNorm of {scale.shape[0]} channels into a layer of {weight.shape[0]} outputs"
        )
    scale, shift = scale.double(), shift.double()
    bias = bias.detach().double() if bias is not None else torch.zeros_like(scale)
    new_weight = weight.detach() * scale.to(weight.dtype).view(-1, *([1] * (weight.dim() - 1)))
    return new_weight, (scale * bias + shift).to(weight.dtype)


def folded_left(linear: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``linear`` with ``norm`` (which follows it) folded in."""
    return scaled_layer(linear.weight, linear.bias, *batchnorm_affine(norm))


class IdentityBatchNorm(SurgeryStep):
    """Turn a BN into the exact identity (μ=0, σ²=1, γ=1, β=0, ε=0); restore every object on remove."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm, name: str = "") -> None:
        self.norm = norm
        self.name = name
        self.description = f"{name}: BatchNorm set to the identity (eps=0)"
        self._saved: dict[str, torch.Tensor | None] = {}
        self._eps = norm.eps

    def register(self) -> None:
        norm = self.norm
        reference = norm.running_mean
        identity = {
            "running_mean": torch.zeros_like(reference),
            "running_var": torch.ones_like(reference),
        }
        if norm.weight is not None:
            identity["weight"] = torch.ones_like(norm.weight.detach())
        if norm.bias is not None:
            identity["bias"] = torch.zeros_like(norm.bias.detach())
        for key, value in identity.items():
            self._saved[key] = swap_tensor(norm, key, value)
        self._eps = norm.eps
        norm.eps = 0.0

    def remove(self) -> None:
        for key, value in self._saved.items():
            swap_tensor(self.norm, key, value)
        self._saved.clear()
        self.norm.eps = self._eps


class FoldBatchNormLeft(SurgeryStep):
    """Fold ``norm`` into the ``linear`` layer that feeds it, then make ``norm`` the identity."""

    def __init__(self, linear: nn.Module, norm: nn.modules.batchnorm._BatchNorm, linear_name: str, norm_name: str):
        self.linear = linear
        self.norm = norm
        self.linear_name = linear_name
        self.norm_name = norm_name
        self.description = f"{norm_name}: BatchNorm folded into {linear_name}"
        self._identity = IdentityBatchNorm(norm, norm_name)
        self._saved: dict[str, torch.Tensor | None] = {}

    def register(self) -> None:
        weight, bias = folded_left(self.linear, self.norm)
        self._saved["weight"] = swap_tensor(self.linear, "weight", weight)
        try:
            self._saved["bias"] = swap_tensor(self.linear, "bias", bias)
            self._identity.register()
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        if not self._saved:
            return
        self._identity.remove()
        for key, value in self._saved.items():
            swap_tensor(self.linear, key, value)
        self._saved.clear()


def sequential_left_pairs(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Module]]:
    """``(linear_name, linear, norm_name, norm)`` for every Linear/Conv directly followed by a BN
    inside an ``nn.Sequential``, where module order is data-flow order by construction."""
    pairs = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (left_name, left), (right_name, right) in zip(children, children[1:]):
            if isinstance(left, LINEAR_TYPES) and isinstance(right, BATCHNORM_TYPES):
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + left_name, left, prefix + right_name, right))
    return pairs


def batchnorm_names(model: nn.Module) -> list[str]:
    """Names of every BatchNorm in ``model`` (any ``_BatchNorm`` subclass), in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def _norm_problem(norm: nn.Module) -> str | None:
    if not isinstance(norm, BATCHNORM_TYPES):
        return f"{type(norm).__name__} is not one of {[t.__name__ for t in BATCHNORM_TYPES]}"
    if norm.running_mean is None or norm.running_var is None:
        return "no running statistics (track_running_stats=False): it normalises with batch statistics"
    return None


def left_fold_problem(linear: nn.Module, norm: nn.Module) -> str | None:
    """Why ``norm`` cannot be folded into the ``linear`` that feeds it, or ``None`` if it can."""
    if not isinstance(linear, LINEAR_TYPES):
        return f"its input comes from a {type(linear).__name__}, not a Conv/Linear"
    outputs = linear.weight.shape[0]
    return _norm_problem(norm) or (
        f"{norm.num_features} channels, but the layer before it has {outputs} outputs"
        if outputs != norm.num_features
        else None
    )


def add_left_fold(plan, linear_name: str, linear: nn.Module, norm_name: str, norm: nn.Module) -> None:
    """Append a ``FoldBatchNormLeft`` step to ``plan``, or record why it is impossible."""
    if norm_name in plan.folded:
        return
    problem = left_fold_problem(linear, norm)
    if problem is None:
        plan.steps.append(FoldBatchNormLeft(linear, norm, linear_name, norm_name))
        plan.folded.append(norm_name)
    else:
        plan.unfolded[norm_name] = problem


def report_unfolded(plan, reason: str) -> None:
    """Give every BN of ``plan`` that is neither folded nor explained yet ``reason``."""
    for name in plan.batchnorms:
        if name not in plan.folded and name not in plan.unfolded:
            plan.unfolded[name] = reason


# --- merge right: BN → Linear/Conv (canonization.md §2.2) -------------------------------------


def _tap_ranges(taps: int) -> torch.Tensor:
    """0/1 rows for every contiguous run ``[a, b]`` of kernel taps (ordered by ``a``, then ``b``), then
    an empty row: the taps an output position can see inside the input along one dimension."""
    rows = [[float(a <= k <= b) for k in range(taps)] for a in range(taps) for b in range(a, taps)]
    return torch.tensor(rows + [[0.0] * taps], dtype=torch.float64)


class _BiasMap:
    """Mixin for a Conv that received a BN from the right through zero padding.

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

    bias: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self._conv_forward(input, self.weight, None)  # type: ignore[attr-defined]
        dims = len(self.kernel_size)  # type: ignore[attr-defined]
        return output + self.bias_map(tuple(input.shape[-dims:]), tuple(output.shape[-dims:]))

    def _left_padding(self, dim: int) -> int:
        if self.padding == "same":  # type: ignore[attr-defined]
            return self.dilation[dim] * (self.kernel_size[dim] - 1) // 2  # type: ignore[attr-defined]
        return 0 if self.padding == "valid" else self.padding[dim]  # type: ignore[attr-defined]

    def bias_map(self, in_size: tuple[int, ...], out_size: tuple[int, ...]) -> torch.Tensor:
        """The bias of every output position, ``(out_channels, *out_size)``."""
        index: list[torch.Tensor] = []
        device = self.bias.device
        for dim, (length, outputs) in enumerate(zip(in_size, out_size)):
            taps = self.kernel_size[dim]  # type: ignore[attr-defined]
            start = torch.arange(outputs, device=device) * self.stride[dim] - self._left_padding(dim)  # type: ignore[attr-defined]
            position = start[:, None] + torch.arange(taps, device=device) * self.dilation[dim]  # type: ignore[attr-defined]
            valid = ((position >= 0) & (position < length)).int()
            first, last = valid.argmax(dim=1), taps - 1 - valid.flip(1).argmax(dim=1)
            run = first * taps - first * (first - 1) // 2 + (last - first)  # row of [first, last] in _tap_ranges
            run = torch.where(valid.any(dim=1), run, taps * (taps + 1) // 2)
            index.append(run.view([-1 if d == dim else 1 for d in range(len(in_size))]))
        return self.bias[(slice(None), *index)]


class BiasMapConv1d(_BiasMap, nn.Conv1d):
    """``nn.Conv1d`` plus the border correction of a BN folded in from the right."""


class BiasMapConv2d(_BiasMap, nn.Conv2d):
    """``nn.Conv2d`` plus the border correction of a BN folded in from the right."""


class BiasMapConv3d(_BiasMap, nn.Conv3d):
    """``nn.Conv3d`` plus the border correction of a BN folded in from the right."""


BIAS_MAP_TYPES: dict[type, type] = {nn.Conv1d: BiasMapConv1d, nn.Conv2d: BiasMapConv2d, nn.Conv3d: BiasMapConv3d}


def needs_bias_map(layer: nn.Module) -> bool:
    """Whether a BN folded right into ``layer`` needs a border bias map: a zero-padded conv."""
    if not isinstance(layer, nn.modules.conv._ConvNd) or layer.padding_mode != "zeros":
        return False  # Linear; reflect/replicate/circular padding pads BN outputs, so the shift is exact
    return layer.padding == "same" or (layer.padding != "valid" and any(p > 0 for p in layer.padding))


def right_fold_layer_problem(layer: nn.Module) -> str | None:
    """Why no BN (or per-channel affine map) can be folded into ``layer`` from the right, or ``None``."""
    if isinstance(layer, _BiasMap):
        return f"it feeds a {type(layer).__name__}, which already holds a merged BatchNorm's bias map"
    if type(layer) not in (nn.Linear, *BIAS_MAP_TYPES):
        return f"it feeds a {type(layer).__name__}; merging to the right supports Linear and Conv1d/2d/3d only"
    if getattr(layer, "groups", 1) != 1:
        return f"it feeds a grouped convolution (groups={layer.groups}); merging to the right needs groups=1"
    return None


def right_fold_problem(norm: nn.Module, layer: nn.Module) -> str | None:
    """Why ``norm`` cannot be folded into ``layer``, which it feeds, or ``None`` if it can."""
    problem = _norm_problem(norm) or right_fold_layer_problem(layer)
    if problem is not None:
        return problem
    inputs = layer.weight.shape[1]
    if inputs != norm.num_features:
        return f"{norm.num_features} channels, but the layer after it takes {inputs} inputs"
    return None


def folded_right(layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``layer`` with the per-input-channel map ``x ↦ s·x + t`` before it folded in.

    ``scale``/``shift`` (float64) have one entry per input channel of ``layer``. The bias is a
    vector for Linear and unpadded convs, and the ``BiasMapConvNd`` table (``_BiasMap``) for a
    zero-padded conv (``needs_bias_map``).
    """
    weight = layer.weight.detach()
    dtype = weight.dtype
    view = (1, -1) + (1,) * (weight.dim() - 2)
    taps = (weight.double() * shift.view(view)).sum(dim=1)  # (out, *kernel): each tap's share of the shift
    bias = layer.bias.detach().double() if layer.bias is not None else taps.new_zeros(taps.shape[0])
    new_weight = weight * scale.to(dtype).view(view)
    if not needs_bias_map(layer):
        return new_weight, (bias + taps.reshape(taps.shape[0], -1).sum(dim=1)).to(dtype)
    table = taps
    for size in taps.shape[1:]:  # sum the taps over every run: (out, *kernel) -> (out, *runs)
        table = torch.tensordot(table, _tap_ranges(size).to(table.device), dims=([1], [1]))
    table = table + bias.view(-1, *([1] * (table.dim() - 1)))
    return new_weight, table.to(dtype)


def fold_right_into(
    parent: nn.Module, key: str, layer: nn.Module, scale: torch.Tensor, shift: torch.Tensor
) -> Callable[[], None]:
    """Fold ``x ↦ s·x + t`` (per input channel) into ``layer`` = ``parent.<key>``; return its exact undo.

    Linear and unpadded convs get new ``weight``/``bias`` objects (swapped in and back by
    identity); a zero-padded conv is replaced in ``parent`` by a ``BiasMapConvNd`` and the undo
    puts the original object back. Atomic: on an error nothing is changed.
    """
    weight, bias = folded_right(layer, scale, shift)
    if needs_bias_map(layer):
        replacement = _bias_map_conv(layer, weight, bias)
        parent._modules[key] = replacement

        def restore_module() -> None:
            if parent._modules.get(key) is replacement:
                parent._modules[key] = layer

        return restore_module
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

    def __init__(
        self, norm: nn.modules.batchnorm._BatchNorm, norm_name: str, layers: list[tuple[str, nn.Module, nn.Module]]
    ):
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


def _bias_map_conv(conv: nn.Module, weight: torch.Tensor, table: torch.Tensor) -> nn.Module:
    """A ``BiasMapConvNd`` with ``conv``'s hyper-parameters and hooks and ``table`` as its ``bias``,
    built on the meta device so that no weights are allocated or initialised twice."""
    new = BIAS_MAP_TYPES[type(conv)](
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device="meta",
    )
    new.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    new.bias = nn.Parameter(table, requires_grad=conv.weight.requires_grad)
    new.train(conv.training)
    for key, value in vars(conv).items():  # keep user hooks firing while the replacement stands in
        if key.startswith(("_forward_hooks", "_forward_pre_hooks")):
            setattr(new, key, type(value)(value))
    return new
