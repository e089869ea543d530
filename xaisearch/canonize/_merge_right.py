"""Merging BatchNorm to the right (BN → Linear/Conv), directly or through a thresholded ReLU.

Private building blocks of the DenseNet and Relation Network canonizers. ``batchnorm.py`` has a
whole-BN ``FoldBatchNormRight``; these steps add what the DenseNet and RN folds need on top: a
channel slice of a BN into chosen input columns, the ReLU in between (thresholds, ``s = 0``
channels), and the border bias map as the layer's own ``bias`` parameter. Dedupe candidates.
Maths (canonization.md §2.2–2.3; Pahde et al. 2023, after Binder's DenseNet note):

* BN → Linear, or → Conv with ``padding=0``: ``W'[o, c] = W[o, c]·s_c`` and
  ``b'_o = b_o + Σ_{c,k} W[o, c, k]·t_c``, exact.
* BN → zero-padded Conv: the border sees zeros *after* the BN, so the shift only counts at valid
  kernel taps and the bias varies near the border. ``BorderBiasConv2d`` keeps that map as its own
  ``bias`` parameter and adds it inside ``forward``. The reference implementation adds it in a
  forward hook, which zennit's ``BasicHook`` bypasses when it recomputes ``module.forward``, so
  LRP rules never saw it (canonization.md §7.4); here every rule does, and rules that zero or
  clamp ``bias`` treat the whole map as the bias.
* BN → ReLU → Linear: ``ReLU(s·x + t) = s·θ(x) + t`` with the thresholded ReLU
  ``θ(x)_c = x_c if s_c·x_c + t_c > 0 else τ_c = −t_c/s_c``. ``ThresholdedReLU`` is a real module
  (a ReLU subclass, so composites map it as they map ReLU), not a hook on the old ReLU.

Every step here computes from the model as it is when it registers (so steps can build on one
another), is atomic on its own, and restores the very objects it replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xaisearch.canonize.base import SurgeryStep, swap_tensor
from xaisearch.canonize.batchnorm import batchnorm_affine

BatchNorm = nn.modules.batchnorm._BatchNorm
RIGHT_MERGE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def scale_shift(
    norm: BatchNorm, channels: slice | None = None, after_relu: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """BN's per-channel ``(s, t)`` in float64, optionally for ``channels`` only.

    ``after_relu``: the shift to fold when a ReLU sits between BN and the linear map. A channel
    with ``s_c = 0`` is the constant ``ReLU(t_c)`` there, and no threshold can express it; its
    column is scaled to zero and ``ReLU(t_c)`` is folded instead of ``t_c``.
    """
    scale, shift = batchnorm_affine(norm)
    if channels is not None:
        scale, shift = scale[channels], shift[channels]
    if after_relu:
        shift = torch.where(scale == 0, shift.clamp(min=0), shift)
    return scale, shift


class ThresholdedReLU(nn.ReLU):
    """``θ(x)_c = x_c`` where ``s_c·x_c + t_c > 0``, else ``τ_c = −t_c/s_c`` (canonization.md §2.3).

    Stands where the ReLU of a BN → ReLU → Linear chain stood once the BN is merged into the
    Linear: ``Linear(ReLU(BN(x))) = Linear'(θ(x))``, for negative ``s_c`` too; channels with
    ``s_c = 0`` output 0 (their merged weight column is 0). Its gradient is the original ReLU's
    active mask. Note that inactive positions carry ``τ_c``, not 0, so rules that weight by the
    input (z⁺, α-β, γ) may give them relevance, as in Pahde et al.'s canonizers. Rules that read
    the ReLU's *input* (zennit's ``ReLUBetaSmooth``) see the pre-BN value and do not apply.
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or scale.dtype
        constant = scale == 0  # never active: θ outputs 0 there
        shift = torch.where(constant, torch.zeros_like(shift), shift)
        threshold = -shift / torch.where(constant, torch.ones_like(scale), scale)
        self.register_buffer("scale", scale.to(dtype))
        self.register_buffer("shift", shift.to(dtype))
        self.register_buffer("threshold", threshold.to(dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (input.dim() - 2)
        active = input * self.scale.view(shape) + self.shift.view(shape) > 0
        return torch.where(active, input, self.threshold.view(shape))

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}"


def expand_bias_kernel(
    kernel: torch.Tensor, input_size: Sequence[int], kernel_size: Sequence[int], padding: Sequence[int]
) -> torch.Tensor:
    """The ``(C, H_out, W_out)`` bias map of a stride-1 zero-padded conv from its bias kernel.

    ``kernel[:, a, b]`` (``0 ≤ a ≤ 2p``) is the bias where ``p − a`` kernel rows hang over the top
    border (``a ≤ p``) or ``a − p`` over the bottom (``a ≥ p``); likewise for columns. A position
    can overhang both borders of a small input; since the bias is a sum over valid taps and the
    two overhangs are disjoint, it is ``K[top] + K[bottom] − K[centre]`` (inclusion-exclusion),
    one dimension at a time. Exact for every input size, including a 1×1 map under a 3×3 kernel.
    """
    out = kernel
    for dim, (size, k, p) in enumerate(zip(input_size, kernel_size, padding), start=1):
        positions = torch.arange(size + 2 * p - k + 1, device=kernel.device)
        top = positions.clamp(max=p)
        bottom = p + (positions + k - p - size).clamp(min=0)
        centre = torch.full_like(positions, p)
        out = out.index_select(dim, top) + out.index_select(dim, bottom) - out.index_select(dim, centre)
    return out


class BorderBiasConv2d(nn.Conv2d):
    """A zero-padded, stride-1 ``Conv2d`` whose ``bias`` is a border-aware bias kernel.

    ``bias`` has shape ``(out_channels, 2p_h + 1, 2p_w + 1)`` (see ``expand_bias_kernel``); its
    centre is the interior bias. The map is added inside ``forward``, so it is part of what
    zennit's rules recompute, and it is a ``Parameter`` named ``bias``, so parameter modifiers and
    ``zero_params=["bias"]`` act on it as on an ordinary bias.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, weight: torch.Tensor, bias_kernel: torch.Tensor) -> BorderBiasConv2d:
        module = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=False, device="meta"
        )
        module.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        module.bias = nn.Parameter(bias_kernel, requires_grad=conv.weight.requires_grad)
        return module

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = F.conv2d(input, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        return output + expand_bias_kernel(self.bias, input.shape[-2:], self.kernel_size, self.padding)


def is_padded(conv: nn.Module) -> bool:
    """Whether a Conv pads its input (``padding="valid"`` and all-zero padding do not)."""
    padding = getattr(conv, "padding", (0,))
    return padding != "valid" and (isinstance(padding, str) or any(padding))


def right_merge_problem(linear: nn.Module) -> str | None:
    """Why a BatchNorm cannot be merged into ``linear`` (which it feeds), or ``None`` if it can."""
    if not isinstance(linear, RIGHT_MERGE_TYPES):
        return f"it feeds a {type(linear).__name__}, not a Linear/Conv"
    if isinstance(linear, BorderBiasConv2d):
        return "that convolution already holds a merged BatchNorm's bias map"
    if isinstance(linear, nn.Linear):
        return None
    if linear.groups != 1:
        return "grouped convolutions would need per-group merging"
    if not is_padded(linear):
        return None
    if not isinstance(linear, nn.Conv2d) or isinstance(linear.padding, str) or linear.padding_mode != "zeros":
        return "only a Conv2d with explicit zero padding gets a border bias map"
    if linear.stride != (1, 1) or linear.dilation != (1, 1):
        return "a padded convolution with stride or dilation has no bias kernel here"
    if any(p >= k for p, k in zip(linear.padding, linear.kernel_size)):
        return "its padding is as large as its kernel"
    return None


class SwapChild(SurgeryStep):
    """Put ``make(original)`` where ``parent.<name>`` is; ``remove()`` puts the original object back."""

    def __init__(self, parent: nn.Module, name: str, make: Callable[[nn.Module], nn.Module], description: str) -> None:
        self.parent, self.name, self.make, self.description = parent, name, make, description
        self._original: nn.Module | None = None

    def register(self) -> None:
        original = self.parent._modules[self.name]
        replacement = self.make(original)
        self.parent._modules[self.name] = replacement
        self._original = original

    def remove(self) -> None:
        if self._original is not None:
            self.parent._modules[self.name] = self._original
            self._original = None


class FoldSliceRight(SurgeryStep):
    """Merge ``norm`` (its ``channels``) into the input ``columns`` of ``parent.<name>``.

    Each slice in ``columns`` receives the same BN (the Relation Network's first g layer reads the
    same object features in two slots); default: all input columns. With ``after_relu`` the merge
    is the right half of a thresholded-ReLU fold (``scale_shift``). The target is looked up when
    the step registers, so it may be a module an earlier step put there. A padded Conv2d is
    replaced by a ``BorderBiasConv2d``; otherwise ``weight``/``bias`` are swapped by identity.
    The BN itself is not touched: pair this step with ``IdentityBatchNorm``.
    """

    def __init__(
        self,
        norm: BatchNorm,
        parent: nn.Module,
        name: str,
        description: str,
        channels: slice | None = None,
        columns: Sequence[slice] = (slice(None),),
        after_relu: bool = False,
    ) -> None:
        self.norm, self.parent, self.name, self.description = norm, parent, name, description
        self.channels, self.columns, self.after_relu = channels, tuple(columns), after_relu
        self._saved: dict[str, torch.Tensor | None] = {}
        self._linear: nn.Module | None = None
        self._swap: SwapChild | None = None

    def register(self) -> None:
        linear = self.parent._modules[self.name]
        problem = right_merge_problem(linear)
        if problem is not None:
            raise ValueError(f"{self.description}: cannot merge, {problem}")
        scale, shift = scale_shift(self.norm, self.channels, self.after_relu)
        weight = linear.weight.detach().double()
        bias = linear.bias.detach().double() if linear.bias is not None else weight.new_zeros(weight.shape[0])
        in_scale, in_shift = weight.new_ones(weight.shape[1]), weight.new_zeros(weight.shape[1])
        widths = [len(range(*columns.indices(weight.shape[1]))) for columns in self.columns]
        if any(width != len(scale) for width in widths):
            raise ValueError(
                f"{self.description}: {len(scale)} BatchNorm channels for input columns of widths {widths}"
            )
        for columns in self.columns:
            in_scale[columns], in_shift[columns] = scale, shift
        broadcast = (1, -1) + (1,) * (weight.dim() - 2)
        new_weight = (weight * in_scale.view(broadcast)).to(linear.weight.dtype)
        if is_padded(linear):
            shift_map = in_shift.view(broadcast).expand(1, -1, *linear.kernel_size)
            kernel = F.conv2d(shift_map, weight, None, padding=linear.padding)[0] + bias.view(-1, 1, 1)
            conv = BorderBiasConv2d.from_conv(linear, new_weight, kernel.to(linear.weight.dtype))
            self._swap = SwapChild(self.parent, self.name, lambda _: conv, self.description)
            self._swap.register()
            return
        new_bias = (bias + (weight * in_shift.view(broadcast)).reshape(len(weight), -1).sum(1)).to(linear.weight.dtype)
        self._linear = linear
        try:
            self._saved["weight"] = swap_tensor(linear, "weight", new_weight)
            self._saved["bias"] = swap_tensor(linear, "bias", new_bias)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        if self._swap is not None:
            self._swap.remove()
            self._swap = None
        for key, value in self._saved.items():
            swap_tensor(self._linear, key, value)
        self._saved.clear()


def threshold_relu(norm: BatchNorm, width: int, channels: slice | None = None) -> Callable[[nn.Module], nn.Module]:
    """A factory for ``SwapChild``: the ``ThresholdedReLU`` of ``norm`` (its ``channels``) over
    ``width`` input channels; channels outside ``channels`` keep a plain ReLU (``s=1, t=0``)."""

    def make(relu: nn.Module) -> nn.Module:
        if not isinstance(relu, nn.ReLU) or isinstance(relu, ThresholdedReLU):
            raise ValueError(f"a thresholded ReLU replaces a plain nn.ReLU, found {type(relu).__name__}")
        scale, shift = scale_shift(norm, channels, after_relu=True)
        full_scale = torch.ones(width, dtype=torch.float64, device=scale.device)
        full_shift = torch.zeros(width, dtype=torch.float64, device=scale.device)
        full_scale[channels or slice(None)], full_shift[channels or slice(None)] = scale, shift
        return ThresholdedReLU(full_scale, full_shift, dtype=norm.running_mean.dtype)

    return make
