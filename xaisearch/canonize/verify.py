"""Prove that a canonizer keeps the function and restores the model exactly.

Protocol (zennit's own tests plus what they miss): work on a deep copy in eval mode, in float64
by default, with randomised BatchNorm statistics and affine parameters (trained statistics can
hide a wrong fold; random ones cannot); compare outputs before and while canonized; after
``remove()`` check outputs bit for bit, ``state_dict`` keys and values, parameter object identity
and that no instance attribute shadows a parameter or buffer.

``max_rel_diff`` is ``max|y_canonized − y| / max|y|`` over the batch: relative to the output
scale, so that logits near zero do not make it meaningless.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from xaisearch.canonize.base import Canonizer


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

    def passed(self, tolerance: float | None = None) -> bool:
        """Function kept within ``tolerance`` (1e-10 in float64, 1e-5 otherwise) and restored exactly."""
        if tolerance is None:
            tolerance = 1e-10 if self.dtype == "float64" else 1e-5
        return self.restored_exactly and self.max_rel_diff <= tolerance

    def to_dict(self) -> dict:
        return asdict(self)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BN random running statistics and affine parameters (in place)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                n = module.running_mean.numel()
                module.running_mean.copy_(torch.randn(n, generator=generator))
                module.running_var.copy_(torch.rand(n, generator=generator) * 2.0 + 0.1)
                if module.weight is not None:
                    module.weight.copy_(torch.randn(n, generator=generator))
                    module.bias.copy_(torch.randn(n, generator=generator))


def _snapshot(model: nn.Module) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    identities = {name: id(p) for name, p in model.named_parameters()}
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return identities, state


def restore_problems(model: nn.Module, identities: dict[str, int], state: dict[str, torch.Tensor]) -> list[str]:
    """Differences between ``model`` now and a snapshot taken with ``_snapshot``; empty if none."""
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
    return problems


def verify_canonizer(
    model: nn.Module,
    canonizer: Canonizer,
    input_shape: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    batch_size: int = 4,
    seed: int = 0,
    randomize_bn: bool = True,
    device: torch.device | str = "cpu",
) -> VerificationReport:
    """Apply ``canonizer`` to a copy of ``model`` and measure function, coverage and restore."""
    generator = torch.Generator().manual_seed(seed)
    subject = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    if randomize_bn:
        randomize_batchnorm(subject, generator)
    x = torch.randn(batch_size, *input_shape, generator=generator, dtype=dtype).to(device)
    plan = canonizer.plan(subject)
    with torch.no_grad():
        reference = subject(x)
        identities, state = _snapshot(subject)
        started = time.perf_counter()
        handles = canonizer.apply(subject)
        applied_at = time.perf_counter()
        canonized = subject(x)
        removing = time.perf_counter()
        for handle in reversed(handles):
            handle.remove()
        removed_at = time.perf_counter()
        restored = subject(x)
    problems = restore_problems(subject, identities, state)
    if not torch.equal(restored, reference):
        problems.append("outputs after remove() differ from the original outputs")
    max_abs = float((canonized - reference).abs().max())
    scale = float(reference.abs().max())
    return VerificationReport(
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
    )
