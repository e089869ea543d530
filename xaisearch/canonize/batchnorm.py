"""BatchNorm folding into the adjacent linear map (Linear/Conv → BN, "merge left").

In eval mode BN on channel c is the affine map ``s_c·x + t_c`` with
``s_c = γ_c / sqrt(σ²_c + ε)`` and ``t_c = β_c − μ_c·s_c``. Folded into the preceding
Linear/Conv: ``W'[c] = s_c·W[c]`` and ``b'_c = s_c·b_c + t_c``; this is exact for any padding,
stride, dilation or grouping because BN acts after the linear map. The BN then becomes the
identity (μ=0, σ²=1, γ=1, β=0, **ε=0**): zennit 0.5.1 keeps ε and leaves an error of 1e-4–1e-3
relative; with ε=0 the identity is exact. Folds are computed in float64 and cast back.
"""

from __future__ import annotations

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


def folded_left(linear: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``linear`` with ``norm`` (which follows it) folded in."""
    scale, shift = batchnorm_affine(norm)
    weight = linear.weight.detach().double()
    if weight.shape[0] != scale.shape[0]:
        raise ValueError(
            f"cannot fold a BatchNorm of {scale.shape[0]} channels into a layer of {weight.shape[0]} outputs"
        )
    bias = linear.bias.detach().double() if linear.bias is not None else torch.zeros_like(scale)
    new_weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    new_bias = scale * bias + shift
    return new_weight.to(linear.weight.dtype), new_bias.to(linear.weight.dtype)


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
