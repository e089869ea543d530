"""Canonize a model no architecture canonizer knows: ``torch.fx`` finds the structure, surgery stays in place.

The trace is only used to *find* things; every change is made on the model's own modules, so
the canonizer works inside zennit composites (which hook the model they are given) and
``remove()`` restores it by identity, like every other canonizer.

1. **BatchNorm by data flow** (not registration order, zennit #63), on a trace of the whole
   model in which Conv/Linear/BN are always leaves:

   * *left*: the BN's input is the output of a Conv/Linear that nothing else uses → fold left;
   * *right*: the BN's output is used only as the input of Conv/Linear layers → fold right into
     each of them (a zero-padded conv gets a border bias map, ``fold_right.py``);
   * a BatchNorm subclass with its own ``forward`` or with children (timm's ``BatchNormAct2d``:
     BN → dropout → activation) folds left only where its forward is provably BN followed by its
     children, and never right (``norm_act.py``);
   * anything else (BN after a ReLU or a concatenation, a module called twice, …) is listed in
     ``plan.unfolded`` with its producer and consumers.

2. **Functional residuals and gates.** A module whose own ``forward`` adds two tensors
   (``x + y``, ``out += y``, ``torch.add``, ``Tensor.add``), sums one over a dimension
   (``torch.sum(x, dim=1)``: a selective kernel's weighted branches), or multiplies a tensor by
   a gate (a sigmoid, hard sigmoid or softmax of something, possibly reshaped: SE, ECA, SK,
   CBAM; ``gates.gate_operands``) is traced again on its own, its submodules as leaves. In that
   graph each addition becomes ``stack`` → a registered ``zennit.layer.Sum`` child
   (``canonizer_sum``, ``canonizer_sum_1``, …), each sum a ``Sum(dim)`` child, and each gated
   product a ``signal_gate``; the generated code becomes the module's instance ``forward``,
   bound to the module itself so it reads the live submodules, parameters and buffers. Other
   products of two tensors are left to autograd and named in ``plan.notes``. The module's own
   trace follows the call the model makes: arguments the call omits take their defaults, and
   constants it passes are traced as constants (``_graph.concrete_arguments``), so
   ``if shortcut is None`` takes the branch the model takes (timm's ``DlaBasic``) and the
   generated forward asserts it. The model itself is assumed to be called with its required
   arguments only.

Limits: the generated forward keeps what Python decided while tracing (``self.training``
branches, shape arithmetic), which is right in eval mode, the only mode a canonized model is
used in; a module called more than once keeps its forward (one ``Sum`` per call would be
needed, since zennit rules store one input per module) and is named in ``plan.notes``, as are
in-place additions whose input is read again and products without a gate. A
``BatchNorm1d`` is folded right into a ``Linear`` when the channel counts match; on a 3-D input
``(B, C, L)`` with ``L == C`` that would be wrong, which the trace cannot see (``verify`` can).

**Plans are cached per model** (``plan_cache.py``): the trace runs once per model, every
``plan()`` hands out fresh steps bound to the model's own objects, and the folds are computed
at ``register()`` time from the weights of that moment.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from zennit.layer import Sum

from xaisearch.canonize._graph import (
    ADDS,
    PRODUCTS,
    Call,
    OwnForwardTracer,
    concrete_arguments,
    is_kind,
    module_of,
    non_tensors,
    operands,
)
from xaisearch.canonize.base import CanonizationPlan, Canonizer, ReplaceForward
from xaisearch.canonize.fold_left import add_left_fold, left_fold_problem
from xaisearch.canonize.fold_right import FoldBatchNormRight, needs_bias_map, right_fold_problem
from xaisearch.canonize.gates import gate_operands, signal_gate
from xaisearch.canonize.plan import LINEAR_TYPES, BatchNorm, batchnorm_names
from xaisearch.canonize.plan_cache import PlanCache
from xaisearch.canonize.residual import SUM_NAME

_REDUCTIONS: set[object] = {torch.sum, "sum"}
_IN_PLACE: set[object] = {operator.iadd, operator.imul, "add_", "mul_"}


class UntraceableModelError(ValueError):
    """``torch.fx`` cannot trace the model, so ``auto`` cannot see its data flow."""


class _StructureTracer(fx.Tracer):
    """torch.fx's default leaves plus every Conv/Linear/BN/Sum, whatever package defines its subclass.

    Records how the model calls each submodule (``calls``: its first call's arguments, proxies
    for tensors), so that a module's forward traced on its own follows the same branches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, Call] = {}

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (*LINEAR_TYPES, BatchNorm, Sum)) or super().is_leaf_module(module, qualified_name)

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.calls.setdefault(self.path_of_module(m), (tuple(args), dict(kwargs)))
        return super().call_module(m, forward, args, kwargs)


def _summed(node: fx.Node, sizes: set[fx.Node]) -> tuple[fx.Node, int] | None:
    """``(tensor, dim)`` of ``torch.sum(x, dim)`` / ``x.sum(dim)`` over one dimension (no keepdim, no
    dtype), which a ``Sum(dim)`` computes; ``None`` for anything else."""
    if not is_kind(node, _REDUCTIONS) or not node.args or len(node.args) > 2:
        return None
    tensor, kwargs = node.args[0], dict(node.kwargs)
    dim = node.args[1] if len(node.args) == 2 else kwargs.pop("dim", None)
    if kwargs.pop("keepdim", False) is not False or kwargs or not isinstance(tensor, fx.Node) or tensor in sizes:
        return None
    if isinstance(dim, (tuple, list)) and len(dim) == 1:
        dim = dim[0]
    return (tensor, dim) if isinstance(dim, int) and not isinstance(dim, bool) else None


def _owner(node: fx.Node) -> tuple[str, int]:
    """The module whose own forward ``node`` belongs to, and how many times the trace entered it."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", 1
    key, (path, _) = list(stack.items())[-1]
    return path, 1 + (int(key.rsplit("@", 1)[1]) if "@" in key else 0)


def _free_name(module: nn.Module, taken: dict[str, nn.Module]) -> str:
    index = 0
    while hasattr(module, name := f"{SUM_NAME}_{index}" if index else SUM_NAME) or name in taken:
        index += 1
    return name


def _mutation_is_read_later(node: fx.Node) -> bool:
    """An in-place ``a += b`` / ``a.add_(b)`` whose ``a`` is read again afterwards: made out of
    place, the later reads would miss the update."""
    if node.target not in _IN_PLACE or not isinstance(node.args[0], fx.Node):
        return False
    later = set()
    cursor = node.next
    while cursor.op != "root":
        later.add(cursor)
        cursor = cursor.next
    return any(user in later for user in node.args[0].users)


def _is_functional(node: fx.Node, sizes: set[fx.Node]) -> bool:
    """An addition, product or sum over one dimension of tensors: what ``explicit_forward`` rewrites."""
    return bool(operands(node, ADDS, sizes) or operands(node, PRODUCTS, sizes) or _summed(node, sizes))


def explicit_forward(
    module: nn.Module, label: str, call: Call | None = None
) -> tuple[Callable[..., Any], dict[str, nn.Module], list[str], list[str]]:
    """``module``'s forward with tensor additions and sums as ``Sum`` children and gated products
    (``gates.gate_operands``) as signal-only gates.

    ``call``: how the model calls ``module`` (``(args, kwargs)``; ``None`` for the model itself):
    arguments it omits or passes as constants are traced as those values
    (``_graph.concrete_arguments``). Returns the new forward (a function of ``self``), the
    ``Sum`` children it calls, what changed and what was left as is (and why); the module itself
    is not touched.
    """
    graph = OwnForwardTracer().trace(module, concrete_args=concrete_arguments(module, call) or None)
    modules = dict(module.named_modules())
    sizes = non_tensors(graph)
    children: dict[str, nn.Module] = {}
    changes: list[str] = []
    left: list[str] = []
    for node in list(graph.nodes):
        addends = operands(node, ADDS, sizes)
        product = None if addends else operands(node, PRODUCTS, sizes)
        summed = None if addends or product else _summed(node, sizes)
        if addends is None and product is None and summed is None:
            continue
        gate = gate_operands(node, modules, sizes) if product else None
        if product and gate is None:
            left.append(f"product `{node.name}` has no sigmoid gate: left to autograd, relevance is not conserved")
            continue
        if _mutation_is_read_later(node):
            left.append(f"in-place `{node.name}` changes a tensor that is read again later: left as is")
            continue
        with graph.inserting_before(node):
            if gate is not None:
                replacement = graph.call_function(signal_gate, gate)
                changes.append(f"product `{node.name}` made a signal-only gate")
            else:
                name = _free_name(module, children)
                if addends is not None:
                    children[name] = Sum(dim=-1)
                    broadcast = graph.call_function(torch.broadcast_tensors, addends)
                    replacement = graph.call_module(name, (graph.call_function(torch.stack, (broadcast, -1)),))
                    changes.append(f"addition `{node.name}` made explicit ({label}{name})")
                else:
                    assert summed is not None  # the one case left
                    children[name] = Sum(dim=summed[1])
                    replacement = graph.call_module(name, (summed[0],))
                    changes.append(f"sum `{node.name}` over dim {summed[1]} made explicit ({label}{name})")
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)
    graph.lint()
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<canonized forward of {label.rstrip('.') or type(module).__name__}>", "exec"), namespace)
    return namespace["forward"], children, changes, left


_PLANS = PlanCache()


class AutoCanonizer(Canonizer):
    """Folds BatchNorm found by data flow and makes functional residuals and gates explicit (see module doc)."""

    name = "auto"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        return _PLANS.plan(model, self._traced_plan)

    def _traced_plan(self, model: nn.Module) -> CanonizationPlan:
        plan = CanonizationPlan(batchnorms=batchnorm_names(model))
        tracer = _StructureTracer()
        try:
            graph = tracer.trace(model, concrete_args=concrete_arguments(model, None) or None)
        except Exception as error:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            more = f" and {len(plan.batchnorms) - 5} more" if len(plan.batchnorms) > 5 else ""
            raise UntraceableModelError(
                f"canonizer 'auto' cannot trace {type(model).__name__} with torch.fx ({reason}); its BatchNorms "
                f"{plan.batchnorms[:5]}{more} would stay unfolded. Make its forward traceable (no Python control "
                "flow on tensor values) or use an architecture canonizer"
            ) from error
        modules = dict(model.named_modules())
        right = self._fold_batchnorms(graph, model, modules, plan)
        plan.steps += right  # after every left fold: a right fold reads the weights a left fold wrote
        self._explicit_functionals(graph, modules, tracer.calls, plan)
        return plan

    def _fold_batchnorms(
        self, graph: fx.Graph, model: nn.Module, modules: dict[str, nn.Module], plan: CanonizationPlan
    ) -> list[FoldBatchNormRight]:
        calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
        aliases = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
        right_steps: list[FoldBatchNormRight] = []
        for node in graph.nodes:
            norm = module_of(node, modules)
            if not isinstance(norm, BatchNorm):
                continue
            if calls[node.target] > 1:
                plan.unfolded[node.target] = f"called {calls[node.target]} times; one fold cannot serve every call"
                continue
            producer = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            source = module_of(producer, modules) if producer is not None else None
            if producer is None or source is None:
                left: str | None = "its input is not a module's output"
            else:
                left = left_fold_problem(source, norm)
                if left is None and (len(producer.users) > 1 or calls[producer.target] > 1):
                    left = f"{producer.target}'s output is used elsewhere too"
                if left is None:
                    add_left_fold(plan, str(producer.target), source, node.target, norm)
                    continue
            right = None
            for user in node.users:
                layer = module_of(user, modules)
                if layer is None:
                    right = f"its output feeds `{user.name}`, not a module"
                elif user.args != (node,) or user.kwargs or calls[user.target] > 1:
                    right = f"{user.target} takes it other than as its single input, or is called more than once"
                elif needs_bias_map(layer) and aliases[id(layer)] > 1:
                    right = f"{user.target} is registered under several names and cannot be swapped"
                else:
                    right = right_fold_problem(norm, layer)
                if right is not None:
                    break
            if right is None and node.users:
                layers = [(u.target, modules[u.target.rpartition(".")[0]], modules[u.target]) for u in node.users]
                right_steps.append(FoldBatchNormRight(norm, node.target, layers))
                plan.folded.append(node.target)
            else:
                plan.unfolded[node.target] = f"left: {left}; right: {right or 'its output is unused'}"
        for name in plan.batchnorms:
            if name not in plan.folded and name not in plan.unfolded:
                plan.unfolded[name] = "never called in forward (per the torch.fx trace)"
        return right_steps

    def _explicit_functionals(
        self, graph: fx.Graph, modules: dict[str, nn.Module], calls: dict[str, Call], plan: CanonizationPlan
    ) -> None:
        sizes = non_tensors(graph)
        owners: dict[str, int] = {}
        for node in graph.nodes:
            if _is_functional(node, sizes):
                path, call = _owner(node)
                owners[path] = max(owners.get(path, 0), call)
        for path, entered in owners.items():
            label = f"{path}." if path else ""
            if entered > 1:
                plan.notes.append(f"{path or 'model'}: called {entered} times; its additions/products are left as is")
                continue
            try:
                forward, children, changes, left = explicit_forward(modules[path], label, calls.get(path))
            except Exception as error:
                plan.notes.append(f"{path or 'model'}: cannot trace its own forward ({error}); left as is")
                continue
            plan.notes += [f"{path or 'model'}: {reason}" for reason in left]
            if changes:
                plan.steps.append(
                    ReplaceForward(modules[path], forward, children, f"{path or 'model'}: " + "; ".join(changes))
                )
