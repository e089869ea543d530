"""Merging BatchNorm to the right (BN → Linear/Conv), directly or through a thresholded ReLU.

Private building blocks of the DenseNet and Relation Network canonizers. The fold itself (scale
the input columns, fold the shift into the bias, and for a zero-padded conv the border bias
table of ``BiasMapConvNd``) is ``fold_right.fold_right_into``, which ``FoldBatchNormRight`` uses
too, so there is one implementation of the padded case. This module adds what the DenseNet and
RN folds need on top: a channel slice of a BN into chosen input columns (``FoldSliceRight``), the
ReLU in between (``ThresholdedReLU``; ``s = 0`` channels in ``scale_shift``), and swapping a child
by identity (``base.SwapChild``). Maths (canonization.md §2.2–2.3; Pahde et al. 2023, after Binder's
DenseNet note):

* BN → Linear, or → Conv with ``padding=0``: ``W'[o, c] = W[o, c]·s_c`` and
  ``b'_o = b_o + Σ_{c,k} W[o, c, k]·t_c``, exact.
* BN → zero-padded Conv: the border sees zeros *after* the BN, so the shift only counts at valid
  kernel taps and the bias varies near the border. The conv becomes a ``BiasMapConvNd`` that keeps
  that map as its own ``bias`` parameter (a table over the runs of taps inside the input) and adds
  it inside ``forward``: exact for any stride, dilation, 'same' padding and input size. The
  reference implementation adds the map in a forward hook, which zennit's ``BasicHook`` bypasses
  when it recomputes ``module.forward``, so LRP rules never saw it (canonization.md §7.4); here
  every rule does, and rules that zero or clamp ``bias`` treat the whole map as the bias.
* BN → ReLU → Linear: ``ReLU(s·x + t) = s·θ(x) + t`` with the thresholded ReLU
  ``θ(x)_c = x_c if s_c·x_c + t_c > 0 else τ_c = −t_c/s_c``. ``ThresholdedReLU`` is a real module
  (a ReLU subclass, so composites map it as they map ReLU), not a hook on the old ReLU.

To reproduce Pahde et al.'s attributions (``densenet.<variant>.paper``), ``FoldSliceRight(...,
hooked_bias_map=True)`` hides the padded conv's shift map from the rules as their hook did, and
``threshold_relu(..., plain_gradient=True)`` makes a ``PlainGradientThresholdedReLU``, which no
composite maps, so the plain gradient crosses it as it crossed their hooked ReLU.

Every step here computes from the model as it is when it registers (so steps can build on one
another), is atomic on its own, and restores the very objects it replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from xaisearch.canonize.base import SurgeryStep, child_module
from xaisearch.canonize.fold_left import layer_weight
from xaisearch.canonize.fold_right import fold_right_into, right_fold_layer_problem
from xaisearch.canonize.plan import BatchNorm, batchnorm_affine, running_stats


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


class _Threshold(nn.Module):
    """The arithmetic of ``ThresholdedReLU`` and ``PlainGradientThresholdedReLU`` (their docstrings)."""

    scale: torch.Tensor
    shift: torch.Tensor
    threshold: torch.Tensor

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


class ThresholdedReLU(_Threshold, nn.ReLU):
    """``θ(x)_c = x_c`` where ``s_c·x_c + t_c > 0``, else ``τ_c = −t_c/s_c`` (canonization.md §2.3).

    Stands where the ReLU of a BN → ReLU → Linear chain stood once the BN is merged into the
    Linear: ``Linear(ReLU(BN(x))) = Linear'(θ(x))``, for negative ``s_c`` too; channels with
    ``s_c = 0`` output 0 (their merged weight column is 0). Its gradient is the original ReLU's
    active mask. Note that inactive positions carry ``τ_c``, not 0, so rules that weight by the
    input (z⁺, α-β, γ) may give them relevance, as in Pahde et al.'s canonizers. Rules that read
    the ReLU's *input* (zennit's ``ReLUBetaSmooth``) see the pre-BN value and do not apply.

    An ``nn.ReLU`` subclass, so composites map it as they map ReLU (LRP: ``Pass``).
    """


class PlainGradientThresholdedReLU(_Threshold):
    """``ThresholdedReLU`` that no zennit composite maps: relevance crosses it by the plain gradient.

    Pahde et al.'s canonizers threshold the existing ReLU with a forward pre-hook that keeps its
    input and a forward hook that recomputes the output from that kept input. The output then no
    longer depends on the node where zennit's rule hook sits, so the rule (``Pass`` for ReLU)
    never fires and autograd's own gradient, the active-unit mask ``s_c·x_c + t_c > 0``, carries
    the relevance. This module is that behaviour without hooks: it is no ``nn.ReLU`` (zennit's
    ``Activation`` type does not match it), so composites that map by type give it no rule and
    zennit takes the plain gradient. Composites that map ReLU to another rule (guided backprop's
    ``ReLUGuidedBackprop``) do not reach it either, as they did not reach the reference's.
    """


class FoldSliceRight(SurgeryStep):
    """Merge ``norm`` (its ``channels``) into the input ``columns`` of ``parent.<name>``.

    Each slice in ``columns`` receives the same BN (the Relation Network's first g layer reads the
    same object features in two slots); default: all input columns; the other columns are left as
    they are (``s = 1, t = 0``). With ``after_relu`` the merge is the right half of a
    thresholded-ReLU fold (``scale_shift``). The target is looked up when the step registers, so
    it may be a module an earlier step put there. The fold is ``fold_right.fold_right_into``: a
    zero-padded conv is replaced by a ``BiasMapConvNd``, otherwise ``weight``/``bias`` are swapped
    by identity. The BN itself is not touched: pair this step with ``IdentityBatchNorm``.
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
        hooked_bias_map: bool = False,
    ) -> None:
        self.norm, self.parent, self.name, self.description = norm, parent, name, description
        self.channels, self.columns, self.after_relu = channels, tuple(columns), after_relu
        self.hooked_bias_map = hooked_bias_map
        self._undo: Callable[[], None] | None = None

    def register(self) -> None:
        layer = child_module(self.parent, self.name)
        problem = right_fold_layer_problem(layer)
        if problem is not None:
            raise ValueError(f"{self.description}: cannot merge, {problem}")
        scale, shift = scale_shift(self.norm, self.channels, self.after_relu)
        inputs = layer_weight(layer).shape[1]
        widths = [len(range(*columns.indices(inputs))) for columns in self.columns]
        if any(width != len(scale) for width in widths):
            raise ValueError(
                f"{self.description}: {len(scale)} BatchNorm channels for input columns of widths {widths}"
            )
        in_scale = torch.ones(inputs, dtype=scale.dtype, device=scale.device)
        in_shift = torch.zeros(inputs, dtype=shift.dtype, device=shift.device)
        for columns in self.columns:
            in_scale[columns], in_shift[columns] = scale, shift
        self._undo = fold_right_into(self.parent, self.name, layer, in_scale, in_shift, self.hooked_bias_map)

    def remove(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None


def threshold_relu(
    norm: BatchNorm, width: int, channels: slice | None = None, plain_gradient: bool = False
) -> Callable[[nn.Module], nn.Module]:
    """A factory for ``SwapChild``: the ``ThresholdedReLU`` of ``norm`` (its ``channels``) over
    ``width`` input channels; channels outside ``channels`` keep a plain ReLU (``s=1, t=0``).
    ``plain_gradient``: a ``PlainGradientThresholdedReLU`` (Pahde et al.'s hooked threshold)."""
    kind = PlainGradientThresholdedReLU if plain_gradient else ThresholdedReLU

    def make(relu: nn.Module) -> nn.Module:
        if not isinstance(relu, nn.ReLU) or isinstance(relu, ThresholdedReLU):
            raise ValueError(f"a thresholded ReLU replaces a plain nn.ReLU, found {type(relu).__name__}")
        scale, shift = scale_shift(norm, channels, after_relu=True)
        full_scale = torch.ones(width, dtype=torch.float64, device=scale.device)
        full_shift = torch.zeros(width, dtype=torch.float64, device=scale.device)
        full_scale[channels or slice(None)], full_shift[channels or slice(None)] = scale, shift
        return kind(full_scale, full_shift, dtype=running_stats(norm)[0].dtype)

    return make
