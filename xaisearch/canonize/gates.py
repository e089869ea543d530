"""Multiplicative gates (squeeze-excitation) as signal-only products.

SE computes ``scale(x) * x``. Under the plain gradient, relevance is split between the signal
``x`` and the gate branch (pool → fc → sigmoid), and the sigmoid's derivative leaks it. The
"signal-takes-all" treatment (as in LRP for LSTMs; Pahde et al. 2023, ``SECanonizer``) passes
the incoming relevance to the signal unchanged and none to the gate. The gate's gradient is a
zeros tensor, not ``None`` (as in the reference implementation), so every hooked module of the
gate branch receives a defined, zero relevance instead of no backward call at all.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn
from torchvision.ops.misc import SqueezeExcitation

from xaisearch.canonize.base import CanonizationPlan, ReplaceForward


class SignalOnlyGate(torch.autograd.Function):
    """Forward ``signal * gate``; backward: the signal gets the incoming gradient, the gate zeros."""

    @staticmethod
    def forward(ctx: Any, signal: Tensor, gate: Tensor) -> Tensor:
        ctx.signal_shape = signal.shape
        ctx.gate_shape = gate.shape
        return signal * gate

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor]:
        return grad_output.sum_to_size(ctx.signal_shape), grad_output.new_zeros(ctx.gate_shape)


def signal_gate(signal: Tensor, gate: Tensor) -> Tensor:
    """``signal * gate`` through which relevance flows to ``signal`` only."""
    return cast(Tensor, SignalOnlyGate.apply(signal, gate))


def _squeeze_excitation_forward(self: SqueezeExcitation, input: Tensor) -> Tensor:
    return signal_gate(input, self._scale(input))


def squeeze_excitation_step(name: str, module: nn.Module) -> ReplaceForward | None:
    """The gate step for a torchvision ``SqueezeExcitation``; ``None`` if its class overrides forward."""
    if not isinstance(module, SqueezeExcitation) or type(module).forward is not SqueezeExcitation.forward:
        return None
    return ReplaceForward(
        module, _squeeze_excitation_forward, {}, f"{name}: squeeze-excitation made a signal-only gate"
    )


def squeeze_excitation_gates(plan: CanonizationPlan, model: nn.Module) -> None:
    """Plan fragment: every torchvision ``SqueezeExcitation`` becomes a signal-only gate; one whose
    class overrides ``forward`` is noted and left as is."""
    for name, module in model.named_modules():
        gate = squeeze_excitation_step(name, module)
        if gate is not None:
            plan.steps.append(gate)
        elif isinstance(module, SqueezeExcitation):
            plan.notes.append(f"{name}: SqueezeExcitation overrides forward; its product is left as is")
