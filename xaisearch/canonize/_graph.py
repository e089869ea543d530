"""``torch.fx`` helpers shared by the tracing canonizer (``auto``), gate recognition and the BN checks.

* ``OwnForwardTracer`` traces one module's own ``forward``: every submodule call stays a call.
* ``concrete_arguments``: which parameters of a ``forward`` the model's actual call fixes, so a
  forward traced on its own takes the branch the model takes (``if shortcut is None``, timm's
  ``DlaBasic``), instead of treating every defaulted argument as a tensor.
* Node predicates: which nodes hold sizes rather than tensors, the two tensor operands of a
  binary operation, the module a node calls, and the value a chain of shape-only ops
  (``view``, ``expand_as``, …) passes through unchanged.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
from torch import fx, nn

ADDS: set[object] = {operator.add, operator.iadd, torch.add, "add", "add_"}
PRODUCTS: set[object] = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
SIZE_METHODS = {"size", "dim", "numel", "nelement", "item", "tolist"}
SIZE_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}
OPERATORS = {value for value in vars(operator).values() if callable(value)}
# ops that only rearrange or broadcast values: a gate seen through them is still a gate
SHAPE_METHODS = {
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "expand",
    "expand_as",
    "flatten",
    "unsqueeze",
    "squeeze",
    "permute",
    "transpose",
    "contiguous",
}
SHAPE_FUNCTIONS: set[object] = {torch.reshape, torch.flatten, torch.unsqueeze, torch.squeeze, torch.permute}
_PLAIN = (bool, int, float, str, type(None))

Call = tuple[tuple[Any, ...], dict[str, Any]]


class OwnForwardTracer(fx.Tracer):
    """Traces one module's own ``forward`` only: every submodule call stays a call."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return True


def is_plain(value: object) -> bool:
    """A value ``torch.fx`` can specialise a trace on: ``None``, a bool, number or string, or a tuple of them."""
    return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))


def concrete_arguments(module: nn.Module, call: Call | None) -> dict[str, object]:
    """The parameters of ``module.forward`` that ``call`` (the model's ``(args, kwargs)``) fixes.

    A parameter the call omits takes its default; one the call passes as a plain constant
    (``None``, a flag) takes that value. Both become ``concrete_args`` of the trace, which then
    follows the branch the model takes and guards it with an assertion (a later call with another
    value fails instead of silently computing something else). ``call=None`` (the model itself,
    called with its input only): every defaulted parameter takes its default. Tensor arguments and
    defaults that are not plain stay placeholders.
    """
    try:
        signature = inspect.signature(module.forward)
        bound = signature.bind_partial(*call[0], **call[1]) if call is not None else signature.bind_partial()
    except (TypeError, ValueError):
        return {}
    concrete: dict[str, object] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in bound.arguments:
            if is_plain(bound.arguments[name]):
                concrete[name] = bound.arguments[name]
        elif parameter.default is not parameter.empty and is_plain(parameter.default):
            concrete[name] = parameter.default
    return concrete


def is_kind(node: fx.Node, targets: set[object]) -> bool:
    """Whether ``node`` calls a function or method in ``targets``."""
    return node.op in ("call_function", "call_method") and node.target in targets


def non_tensors(graph: fx.Graph) -> set[fx.Node]:
    """Nodes that hold sizes, dtypes or devices (``x.size(0) + 1``), not tensors."""
    found: set[fx.Node] = set()
    for node in graph.nodes:
        inputs = node.all_input_nodes
        if (
            (node.op == "call_method" and node.target in SIZE_METHODS)
            or (node.op == "call_function" and node.target is getattr and node.args[1] in SIZE_ATTRIBUTES)
            or (node.op == "call_function" and node.target is len)
            or (node.op == "call_function" and node.target in OPERATORS and inputs and set(inputs) <= found)
        ):
            found.add(node)
    return found


def operands(node: fx.Node, targets: set[object], sizes: set[fx.Node]) -> tuple[fx.Node, fx.Node] | None:
    """The two tensor operands of a binary operation in ``targets``; ``None`` for anything else
    (``sizes``: the graph's ``non_tensors``)."""
    if not is_kind(node, targets) or node.kwargs.get("alpha", 1) != 1:
        return None
    found = list(node.args) + ([node.kwargs["other"]] if "other" in node.kwargs else [])
    if len(found) != 2 or not all(isinstance(o, fx.Node) and o not in sizes for o in found):
        return None
    first, second = found
    assert isinstance(first, fx.Node) and isinstance(second, fx.Node)  # checked just above
    return first, second


def module_of(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The module a ``call_module`` node calls; ``None`` for any other node."""
    return modules.get(node.target) if node.op == "call_module" and isinstance(node.target, str) else None


def through_shape_ops(node: fx.Node) -> fx.Node:
    """The node whose values ``node`` merely reshapes or broadcasts (``y.view(…).expand_as(x)`` → ``y``)."""
    while (node.op == "call_method" and node.target in SHAPE_METHODS) or (
        node.op == "call_function" and node.target in SHAPE_FUNCTIONS
    ):
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node):
            break
        node = source
    return node
