"""Multiplicative gates (squeeze-excitation and its relatives) as signal-only products.

SE computes ``scale(x) * x``. Under the plain gradient, relevance is split between the signal
``x`` and the gate branch (pool → fc → sigmoid), and the sigmoid's derivative leaks it. The
"signal-takes-all" treatment (as in LRP for LSTMs; Pahde et al. 2023, ``SECanonizer``) passes
the incoming relevance to the signal unchanged and none to the gate. The gate's gradient is a
zeros tensor, not ``None`` (as in the reference implementation), so every hooked module of the
gate branch receives a defined, zero relevance instead of no backward call at all.

**Recognising a gate in a traced graph** (``gate_operands``, used by ``auto``): a product one of
whose operands is, possibly through shape-only ops (``view``, ``expand_as``: ECA), a sigmoid,
hard sigmoid or softmax, and the other is not. A gate is a call of ``torch.sigmoid``,
``x.sigmoid()``, ``F.hardsigmoid``, ``torch.softmax`` (selective kernels weigh their branches by
a softmax), timm's ``relu6(x + 3) / 6``, or a call of a module whose own forward returns one:
``nn.Sigmoid``/``Hardsigmoid``/``Softmax``, timm's ``Sigmoid``/``HardSigmoid`` (not ``nn``
classes), a selective-kernel attention module, an ``nn.Sequential`` ending in a sigmoid; so SE,
ECA, SK and CBAM's channel and spatial gates are all found by what they compute, not by class.
"""

from __future__ import annotations

import operator
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torchvision.ops.misc import SqueezeExcitation

from xaisearch.canonize._graph import (
    ADDS,
    PRODUCTS,
    OwnForwardTracer,
    is_kind,
    module_of,
    operands,
    through_shape_ops,
)
from xaisearch.canonize.base import CanonizationPlan, ReplaceForward

GATE_FUNCTIONS: set[object] = {
    torch.sigmoid,
    F.sigmoid,
    F.hardsigmoid,
    torch.softmax,
    F.softmax,
    "sigmoid",
    "sigmoid_",
    "softmax",
}
GATE_MODULES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)
_DIVISIONS: set[object] = {operator.truediv, operator.itruediv, torch.div, "div", "div_"}
_CLAMPS: set[object] = {torch.clamp, "clamp", "clamp_", F.hardtanh}
_MAX_DEPTH = 8  # nested gate modules looked into


def _constant(value: object, expected: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == expected


def _is_hard_sigmoid(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``relu6(x + 3) / 6`` (timm's ``hard_sigmoid``; in place: ``x.add_(3).clamp_(0, 6).div_(6)``)."""
    if not is_kind(node, _DIVISIONS) or len(node.args) != 2 or not _constant(node.args[1], 6):
        return False
    clipped = node.args[0]
    if not isinstance(clipped, fx.Node) or not clipped.args:
        return False
    clamped = is_kind(clipped, _CLAMPS) and len(clipped.args) == 3
    relu6 = (
        (clipped.op == "call_function" and clipped.target is F.relu6)
        or isinstance(module_of(clipped, modules), nn.ReLU6)
        or (clamped and _constant(clipped.args[1], 0) and _constant(clipped.args[2], 6))
    )
    shifted = clipped.args[0]
    return (
        relu6
        and isinstance(shifted, fx.Node)
        and is_kind(shifted, ADDS)
        and any(_constant(argument, 3) for argument in shifted.args[1:])
    )


def is_gate_module(module: nn.Module, depth: int = 0) -> bool:
    """Whether ``module``'s output is a gate: a gate module of torch, or an own forward that returns one."""
    if isinstance(module, GATE_MODULES):
        return True
    if depth >= _MAX_DEPTH or type(module).forward is nn.Module.forward:
        return False
    try:
        graph = OwnForwardTracer().trace(module)
    except Exception:  # untraceable: not provably a gate
        return False
    output = next(node for node in graph.nodes if node.op == "output").args[0]
    return isinstance(output, fx.Node) and is_gate(output, dict(module.named_modules()), depth + 1)


def is_gate(node: fx.Node, modules: dict[str, nn.Module], depth: int = 0) -> bool:
    """Whether ``node`` (of a graph over ``modules``) is a sigmoid, hard-sigmoid or softmax gate."""
    source = through_shape_ops(node)
    if source.op == "call_module":
        module = module_of(source, modules)
        return module is not None and is_gate_module(module, depth)
    return is_kind(source, GATE_FUNCTIONS) or _is_hard_sigmoid(source, modules)


def gate_operands(node: fx.Node, modules: dict[str, nn.Module], sizes: set[fx.Node]) -> tuple[fx.Node, fx.Node] | None:
    """``(signal, gate)`` of a product of which exactly one operand is a gate (``is_gate``), else ``None``."""
    found = operands(node, PRODUCTS, sizes)
    if found is None:
        return None
    first, second = (is_gate(o, modules) for o in found)
    if first != second:
        return (found[1], found[0]) if first else found
    return None


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
