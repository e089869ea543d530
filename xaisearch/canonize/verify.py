"""Prove that a canonizer keeps the function and restores the model exactly.

Protocol (zennit's own tests plus what they miss): work on a deep copy in eval mode, in float64
by default, with randomised BatchNorm statistics and affine parameters (trained statistics can
hide a wrong fold; random ones cannot); compare outputs before and while canonized; after
``remove()`` check outputs bit for bit, ``state_dict`` keys and values, parameter object identity
and that no instance attribute shadows a parameter or buffer.

``max_rel_diff`` is ``max|y_canonized − y| / max|y|`` over the batch: relative to the output
scale, so that logits near zero do not make it meaningless.

Optional checks (canonization.md §9): ``relevance=True`` measures relevance conservation on a
bias-free copy with an epsilon-only composite (``Σ R_in / logit`` per sample; it proves that
every addition, gate and head is a module with a rule, which function preservation cannot),
that a batch is attributed like its samples one by one, and that the model is restored exactly
after the attribution context too; ``atomicity=True`` injects a failure between steps and checks
that the failed ``apply`` leaves the model as it was.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xaisearch.canonize.base import CanonizationPlan, Canonizer, SurgeryStep
from xaisearch.canonize.plan import BatchNorm

if TYPE_CHECKING:
    from zennit.core import Composite

CONSERVATION_TOLERANCE = 1e-4


@dataclass
class VerificationReport:
    canonizer: str
    bn_total: int
    bn_folded: int
    unfolded: dict[str, str]
    steps: list[str]
    max_abs_diff: float
    max_rel_diff: float
    restored_exactly: bool
    restore_problems: list[str] = field(default_factory=list)
    apply_seconds: float = 0.0
    remove_seconds: float = 0.0
    dtype: str = "float64"
    notes: list[str] = field(default_factory=list)
    # relevance=True: max over samples of |Σ R_in / logit − 1| on the bias-free copy, and the ratios
    conservation_error: float | None = None
    conservation_ratios: list[float] = field(default_factory=list)
    # relevance=True: max |R(batch) − R(one sample at a time)| / max |R|
    batch_rel_diff: float | None = None
    # relevance=True: restore problems after the attribution contexts (zennit 1.0.0 #237)
    attribution_problems: list[str] | None = None
    # atomicity=True: what an injected failure left changed; empty when apply is atomic
    atomicity_problems: list[str] | None = None

    def passed(self, tolerance: float | None = None) -> bool:
        """Function kept within ``tolerance`` (1e-10 in float64, 1e-5 otherwise), restored exactly, and
        every optional check that ran passed (conservation within 1e-4, batch = per sample, atomic)."""
        if tolerance is None:
            tolerance = 1e-10 if self.dtype == "float64" else 1e-5
        batch_tolerance = 1e-8 if self.dtype == "float64" else 1e-4
        return (
            self.restored_exactly
            and self.max_rel_diff <= tolerance
            and (self.conservation_error is None or self.conservation_error <= CONSERVATION_TOLERANCE)
            and (self.batch_rel_diff is None or self.batch_rel_diff <= batch_tolerance)
            and not self.attribution_problems
            and not self.atomicity_problems
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN random running statistics and affine parameters (in place)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BatchNorm) and module.running_mean is not None and module.running_var is not None:
                n = module.running_mean.numel()
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) * 2.0 + 0.1)
                if module.weight is not None and module.bias is not None:  # affine: both or neither
                    module.weight.copy_(torch.randn(n, generator=generator))
                    module.bias.copy_(torch.randn(n, generator=generator))


def state_snapshot(model: nn.Module) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    identities = {name: id(p) for name, p in model.named_parameters()}
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return identities, state


_PLAIN = (bool, int, float, str, tuple, type(None))
# type, children by identity, instance attribute names, plain attribute values, hook counts
ModuleSnapshot = tuple[type, dict[str, int], set[str], dict[str, object], dict[str, int]]


def structure_snapshot(model: nn.Module) -> dict[str, ModuleSnapshot]:
    """Per module: its type, children (by identity), instance attribute names, plain attribute
    values (``eps``, ``padding``, …) and hook counts, for ``restore_problems``."""
    snapshot: dict[str, ModuleSnapshot] = {}
    for name, module in model.named_modules():
        attributes = vars(module)
        snapshot[name] = (
            type(module),
            {key: id(child) for key, child in module._modules.items()},
            set(attributes),
            {key: value for key, value in attributes.items() if isinstance(value, _PLAIN)},
            {key: len(value) for key, value in attributes.items() if "hooks" in key and isinstance(value, dict)},
        )
    return snapshot


def _structure_problems(model: nn.Module, before: dict[str, ModuleSnapshot]) -> list[str]:
    now = structure_snapshot(model)
    if set(now) != set(before):
        return [f"module names changed: {sorted(set(now) ^ set(before))[:5]}"]
    problems = []
    for name, (kind, children, keys, plain, hooks) in before.items():
        label = name or "model"
        kind_now, children_now, keys_now, plain_now, hooks_now = now[name]
        if kind_now is not kind or children_now != children:
            problems.append(f"{label}: module type or children changed")
        if keys_now != keys:
            problems.append(f"{label}: instance attributes added or removed: {sorted(keys_now ^ keys)}")
        problems += [
            f"{label}.{k} changed: {plain[k]!r} -> {plain_now.get(k)!r}" for k in plain if plain_now.get(k) != plain[k]
        ]
        if hooks_now != hooks:
            problems.append(f"{label}: hook counts changed")
    return problems


def restore_problems(
    model: nn.Module,
    identities: dict[str, int],
    state: dict[str, torch.Tensor],
    structure: dict[str, ModuleSnapshot] | None = None,
) -> list[str]:
    """Differences between ``model`` now and a snapshot taken with ``state_snapshot`` (and, if given,
    ``structure_snapshot``: children, instance attributes such as a leftover ``forward``, BN ε,
    hooks); empty if none."""
    problems: list[str] = []
    now_ids = {name: id(p) for name, p in model.named_parameters()}
    if set(now_ids) != set(identities):
        problems.append(f"parameter names changed: {sorted(set(now_ids) ^ set(identities))[:5]}")
    problems += [f"parameter {n} is a new object" for n in identities if n in now_ids and now_ids[n] != identities[n]]
    now_state = model.state_dict()
    if set(now_state) != set(state):
        problems.append(f"state_dict keys changed: {sorted(set(now_state) ^ set(state))[:5]}")
    problems += [
        f"state_dict[{k}] changed" for k in state if k in now_state and not torch.equal(now_state[k], state[k])
    ]
    for name, module in model.named_modules():
        shadows = (set(module._parameters) | set(module._buffers)) & set(vars(module))
        problems += [f"{name or 'model'}.{key} is shadowed by an instance attribute" for key in sorted(shadows)]
    if structure is not None:
        problems += _structure_problems(model, structure)
    return problems


def prepared_copy(
    model: nn.Module,
    dtype: torch.dtype,
    device: torch.device | str,
    seed: int,
    randomize_bn: bool,
    batch_size: int,
    input_shape: tuple[int, ...],
) -> tuple[nn.Module, torch.Tensor]:
    """An eval-mode copy of ``model`` (random BN statistics if asked) and a random input batch; the
    same ``seed`` gives the same copy and batch, so every check sees the same model."""
    generator = torch.Generator().manual_seed(seed)
    subject = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    if randomize_bn:
        randomize_batchnorm(subject, generator)
    x = torch.randn(batch_size, *input_shape, generator=generator, dtype=dtype).to(device)
    return subject, x


def verify_canonizer(
    model: nn.Module,
    canonizer: Canonizer,
    input_shape: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    batch_size: int = 4,
    seed: int = 0,
    randomize_bn: bool = True,
    device: torch.device | str = "cpu",
    relevance: bool = False,
    atomicity: bool = False,
) -> VerificationReport:
    """Apply ``canonizer`` to a copy of ``model`` and measure function, coverage and restore
    (plus conservation, batch consistency and state after attribution with ``relevance``, and
    failure atomicity with ``atomicity``)."""
    subject, x = prepared_copy(model, dtype, device, seed, randomize_bn, batch_size, input_shape)
    plan = canonizer.plan(subject)
    with torch.no_grad():
        reference = subject(x)
        identities, state = state_snapshot(subject)
        structure = structure_snapshot(subject)
        started = time.perf_counter()
        handles = canonizer.apply(subject)
        applied_at = time.perf_counter()
        canonized = subject(x)
        removing = time.perf_counter()
        for handle in reversed(handles):
            handle.remove()
        removed_at = time.perf_counter()
        restored = subject(x)
    problems = restore_problems(subject, identities, state, structure)
    if not torch.equal(restored, reference):
        problems.append("outputs after remove() differ from the original outputs")
    max_abs = float((canonized - reference).abs().max())
    scale = float(reference.abs().max())
    report = VerificationReport(
        canonizer=canonizer.name,
        bn_total=len(plan.batchnorms),
        bn_folded=len(plan.folded),
        unfolded=dict(plan.unfolded),
        steps=[step.description for step in plan.steps],
        max_abs_diff=max_abs,
        max_rel_diff=max_abs / scale if scale > 0 else max_abs,
        restored_exactly=not problems,
        restore_problems=problems,
        apply_seconds=applied_at - started,
        remove_seconds=removed_at - removing,
        dtype=str(dtype).removeprefix("torch."),
        notes=list(plan.notes),
    )
    # the restored copy is as good as a fresh one (that is what was just checked); copy anew only if not
    intact = not problems
    if atomicity:
        if not intact:
            subject, x = prepared_copy(model, dtype, device, seed, randomize_bn, batch_size, input_shape)
        report.atomicity_problems = atomicity_problems(subject, canonizer, x)
        intact = not report.atomicity_problems
    if relevance:
        if not intact:
            subject, x = prepared_copy(model, dtype, device, seed, randomize_bn, batch_size, input_shape)
        ratios, report.batch_rel_diff, report.attribution_problems = relevance_checks(subject, canonizer, x)
        report.conservation_ratios = ratios
        report.conservation_error = max(abs(r - 1.0) for r in ratios)
    return report


def make_bias_free(model: nn.Module) -> nn.Module:
    """Zero every bias, BN β and BN running mean in place, so no layer can absorb relevance; also
    turn off ``inplace`` flags (in-place activations and zennit's hooks do not mix)."""
    with torch.no_grad():
        for module in model.modules():
            bias = module._parameters.get("bias")
            if bias is not None:
                bias.zero_()
            if isinstance(module, BatchNorm) and module.running_mean is not None:
                module.running_mean.zero_()
            if isinstance(getattr(module, "inplace", None), bool):
                module.inplace = False  # type: ignore[assignment]  # a bool; torch's stub: Tensor | Module
    return model


def relative_stabilizer(z: torch.Tensor) -> torch.Tensor:
    """``z + sign(z)·ε`` with ε = 1e-9 (float64; 1e-6 otherwise) × the per-sample RMS of ``z`` (zennit's
    ``norm_scale``), plus the smallest normal number so that an all-zero output cannot give 0/0.

    An absolute ε does not fit random bias-free networks: efficientnet_b0's activations shrink to
    1e-12 there, and ε=1e-6 would swallow all relevance (measured ratio 1e-58). Relative to the
    layer, the stabilizer costs ~1e-7 of conservation on resnet50 in float64, far below the 1e-4
    bound, so a missing ``Sum`` or gate (errors of order 1 and more) cannot hide behind it.
    """
    rms = z.pow(2).flatten(1).mean(dim=1).sqrt().view(-1, *([1] * (z.dim() - 1)))
    epsilon = (1e-9 if z.dtype == torch.float64 else 1e-6) * rms + torch.finfo(z.dtype).tiny
    return z + torch.where(z >= 0, epsilon, -epsilon)


def epsilon_composite(canonizer: Canonizer) -> Composite:
    """LRP-ε on every Conv/Linear, ``Pass`` on activations and BN, ``Norm`` on ``Sum`` and average
    pooling (both with ``relative_stabilizer``): under it, a bias-free network conserves relevance."""
    from zennit.core import Composite
    from zennit.core import Hook as ZennitHook
    from zennit.layer import Sum
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

    def module_map(ctx: dict[str, Any], name: str, module: nn.Module) -> ZennitHook | None:
        if isinstance(module, (Convolution, Linear)):
            return Epsilon(epsilon=relative_stabilizer)
        if isinstance(module, (Activation, BatchNorm)):
            return Pass()
        if isinstance(module, (AvgPool, Sum)):
            return Norm(stabilizer=relative_stabilizer)
        return None

    return Composite(module_map=module_map, canonizers=[canonizer])


def relevance_checks(model: nn.Module, canonizer: Canonizer, x: torch.Tensor) -> tuple[list[float], float, list[str]]:
    """On a bias-free ``model`` (changed in place): per-sample ``Σ R_in / logit`` under
    ``epsilon_composite``, the relative difference between batch and one-by-one attributions,
    and the restore problems left by the attribution contexts.

    The explained logit is each sample's largest in magnitude; its own value is the output
    relevance, so the ratio is 1 when nothing leaks.
    """
    from zennit.attribution import Gradient

    from xaisearch.integrity import preserved_state

    make_bias_free(model)
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    with torch.no_grad():
        outputs = model(x)
    logits = outputs.flatten(1)
    target = logits.abs().argmax(dim=1)
    relevance = torch.zeros_like(logits).scatter_(1, target[:, None], logits.gather(1, target[:, None]))
    relevance = relevance.view_as(outputs)
    composite = epsilon_composite(canonizer)
    # attribute as xaisearch does: zennit 1.0.0 swaps parameter objects (#237), the guard puts them back
    with torch.enable_grad(), preserved_state(model), Gradient(model, composite) as attributor:
        _, batch = attributor(x.clone(), relevance)
        singles = [attributor(x[i : i + 1].clone(), relevance[i : i + 1])[1] for i in range(len(x))]
    ratios = (batch.flatten(1).sum(dim=1) / logits.gather(1, target[:, None]).squeeze(1)).tolist()
    scale = float(batch.abs().max())
    batch_diff = float((batch - torch.cat(singles)).abs().max()) / (scale if scale > 0 else 1.0)
    return ratios, batch_diff, restore_problems(model, identities, state, structure)


class InjectedFailure(RuntimeError):
    """Raised by ``_FailingStep`` to test that ``apply`` rolls back."""


class _FailingStep(SurgeryStep):
    description = "injected failure"

    def register(self) -> None:
        raise InjectedFailure("injected failure")

    def remove(self) -> None:
        raise AssertionError("a step that never registered must never be removed")


class _FailingAt(Canonizer):
    """``inner``'s plan with a failing step after its first ``position`` steps."""

    def __init__(self, inner: Canonizer, position: int) -> None:
        self.inner = inner
        self.position = position
        self.name = inner.name

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = self.inner.plan(model)
        plan.steps.insert(self.position, _FailingStep())
        return plan


def atomicity_problems(model: nn.Module, canonizer: Canonizer, x: torch.Tensor) -> list[str]:
    """Let ``apply`` fail after 1, half and all of its steps; list what each failure left changed.

    A failure after all steps is the hardest case: every step must be removed again, in reverse.
    """
    with torch.no_grad():
        reference = model(x)
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    total = len(canonizer.plan(model).steps)
    problems: list[str] = []
    for position in sorted({min(1, total), total // 2, total}):
        try:
            handles = _FailingAt(canonizer, position).apply(model)
        except InjectedFailure:
            pass
        else:
            for handle in reversed(handles):
                handle.remove()
            problems.append(f"failure after {position} steps did not propagate")
        problems += [
            f"failure after {position} steps: {p}" for p in restore_problems(model, identities, state, structure)
        ]
        with torch.no_grad():
            if not torch.equal(model(x), reference):
                problems.append(f"failure after {position} steps: outputs changed")
    return problems
