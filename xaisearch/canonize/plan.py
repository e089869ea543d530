"""What every canonizer's plan shares: the module kinds, the BatchNorm records, and composition.

* **One definition of "a BatchNorm"**: ``BatchNorm`` (``torch.nn.modules.batchnorm._BatchNorm``,
  so ``BatchNorm1d/2d/3d``, ``SyncBatchNorm`` and user subclasses alike). Every canonizer
  collects, folds and reports through it; no canonizer keeps its own, narrower list. A
  subclass that computes more than BN (timm's ``BatchNormAct2d``) is still one; which folds
  stay exact through it is ``norm_act.py``'s to say.
* **The records**: ``batchnorm_names`` starts a plan's inventory, ``report_unfolded`` gives every
  BN a fragment did not reach its reason, so nothing is skipped silently.
* **The BN's own surgery, shared by both folds**: its eval-mode affine map (``batchnorm_affine``)
  and the step that turns it into the exact identity (``IdentityBatchNorm``).
* **Composition** in the manner of zennit's ``CompositeCanonizer``: a *plan fragment* is a
  function ``(plan, model) -> None`` that adds steps and records to a plan (the left folds, the
  residual ``Sum`` modules, the signal-only gates); ``CompositeCanonizer`` runs its fragments in
  order, so ResNet, EfficientNet and VGG are lists of fragments, not near-copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from xaisearch.canonize.base import CanonizationPlan, Canonizer, SurgeryStep, swap_tensor

BatchNorm = nn.modules.batchnorm._BatchNorm
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (BatchNorm,)
LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
STRUCTURAL_ARM = "structural arm: BatchNorm kept on purpose"

PlanFragment = Callable[[CanonizationPlan, nn.Module], None]


def is_batchnorm(module: object) -> bool:
    """Whether ``module`` is a BatchNorm in the one sense every canonizer uses (module docstring)."""
    return isinstance(module, BATCHNORM_TYPES)


def batchnorm_names(model: nn.Module) -> list[str]:
    """Names of every BatchNorm in ``model``, in registration order."""
    return [name for name, module in model.named_modules() if is_batchnorm(module)]


def report_unfolded(plan: CanonizationPlan, reason: str) -> None:
    """Give every BN of ``plan`` that is neither folded nor explained yet ``reason``."""
    for name in plan.batchnorms:
        if name not in plan.folded and name not in plan.unfolded:
            plan.unfolded[name] = reason


def norm_problem(norm: nn.Module) -> str | None:
    """Why ``norm`` is no BN a fold can remove, or ``None`` if it is one."""
    if not isinstance(norm, BatchNorm):
        return f"{type(norm).__name__} is not a BatchNorm (torch.nn.modules.batchnorm._BatchNorm)"
    if norm.running_mean is None or norm.running_var is None:
        return "no running statistics (track_running_stats=False): it normalises with batch statistics"
    return None


def running_stats(norm: BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(running_mean, running_var)`` of ``norm``; a ``ValueError`` if it tracks none."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    return norm.running_mean, norm.running_var


def batchnorm_affine(norm: BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scale ``s`` and shift ``t`` of ``norm`` in eval mode, in float64.

    ``s_c = γ_c / sqrt(σ²_c + ε)`` and ``t_c = β_c − μ_c·s_c``.
    """
    running_mean, running_var = running_stats(norm)
    mean = running_mean.detach().double()
    var = running_var.detach().double()
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    return scale, beta - mean * scale


class IdentityBatchNorm(SurgeryStep):
    """Turn a BN into the exact identity (μ=0, σ²=1, γ=1, β=0, ε=0); restore every object on remove.

    ε=0 matters: zennit 0.5.1 keeps ε and leaves an error of 1e-4–1e-3 relative; with ε=0 the
    identity is exact.
    """

    def __init__(self, norm: BatchNorm, name: str = "") -> None:
        self.norm = norm
        self.name = name
        self.description = f"{name}: BatchNorm set to the identity (eps=0)"
        self._saved: dict[str, torch.Tensor | None] = {}
        self._eps = norm.eps

    def register(self) -> None:
        norm = self.norm
        reference, _ = running_stats(norm)
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


class CompositeCanonizer(Canonizer):
    """A canonizer made of plan fragments (zennit's ``CompositeCanonizer``, for plans).

    ``plan`` lists the model's BatchNorms, runs the ``structure`` fragments (sums, gates), then,
    unless this is the structural arm (``fold=False``: the baseline of Pahde et al. 2023), the
    ``folds``; every BN still unreached is reported with ``unreached`` (or, in the structural
    arm, as kept on purpose). The structural arm is registered as ``<name>.structural``.
    """

    def __init__(
        self,
        name: str,
        structure: Sequence[PlanFragment] = (),
        folds: Sequence[PlanFragment] = (),
        unreached: str = "not reached by the canonizer",
        fold: bool = True,
    ) -> None:
        self.name = name if fold else f"{name}.structural"
        self.structure = tuple(structure)
        self.folds = tuple(folds)
        self.unreached = unreached
        self.fold = fold

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = CanonizationPlan(batchnorms=batchnorm_names(model))
        for fragment in self.structure + (self.folds if self.fold else ()):
            fragment(plan, model)
        report_unfolded(plan, self.unreached if self.fold else STRUCTURAL_ARM)
        return plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fold={self.fold})"
