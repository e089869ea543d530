"""Recording and comparing the outputs of a model's modules, for the canonizer guard.

The guard (``guard.py``) compares the model's output before and after canonization; when they
differ, these name the first module whose own output diverged, in execution order, leaving out
the outputs a correct fold changes on purpose (a Conv/Linear feeding a BatchNorm, and a plain
BatchNorm feeding a Conv/Linear).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xaisearch.canonize.plan import BATCHNORM_TYPES, LINEAR_TYPES


def output_tensors(output: object) -> list[torch.Tensor]:
    """The tensors of a module's output (a tensor, or tensors in a tuple, list or dict)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in output_tensors(item)]
    return []


def relative_difference(reference: object, other: object) -> float:
    """``max|b − a| / max|a|`` over every tensor of two outputs, where ``a`` is finite (a value the
    original cannot compute is no canonizer's to keep); ``inf`` if shapes differ or ``b`` is not
    finite where ``a`` is."""
    ours, theirs = output_tensors(reference), output_tensors(other)
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        return float("inf")
    difference = scale = 0.0
    for a, b in zip(ours, theirs):
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return float("inf")
            continue
        finite = torch.isfinite(a)
        a, b = a[finite].double(), b[finite].double()
        if not bool(torch.isfinite(b).all()):
            return float("inf")
        if a.numel():
            difference = max(difference, float((b - a).abs().max()))
            scale = max(scale, float(a.abs().max()))
    return difference / scale if scale > 0 else difference


@dataclass
class Call:
    """One call of a leaf module during a recorded forward."""

    name: str
    index: int  # 1 for the module's first call, 2 for its second, …
    module_type: type[nn.Module]
    outputs: list[torch.Tensor]
    producer: str | None  # the module whose output was this call's first input


@contextmanager
def recorded(model: nn.Module, names: set[str]) -> Iterator[list[Call]]:
    """Record every call of the modules called ``names`` in ``model`` (outputs cloned, in order)."""
    calls: list[Call] = []
    counts: Counter[str] = Counter()
    producers: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> name; the tensor keeps the id unique
    inputs: dict[str, str | None] = {}

    def before(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            first = output_tensors(args)[:1]
            found = producers.get(id(first[0])) if first else None
            inputs[name] = found[0] if found is not None and found[1] is first[0] else None

        return hook

    def after(name: str) -> Callable[[nn.Module, tuple[Any, ...], object], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: object) -> None:
            counts[name] += 1
            tensors = output_tensors(output)
            calls.append(Call(name, counts[name], type(module), [t.detach().clone() for t in tensors], inputs[name]))
            for tensor in tensors:
                producers[id(tensor)] = (name, tensor)

        return hook

    handles = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        if name in names and id(module) not in seen:
            seen.add(id(module))
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after(name)))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
        producers.clear()


def compared_names(model: nn.Module) -> set[str]:
    """Leaf modules, and BatchNorms as a whole: a BN with children (timm's ``BatchNormAct2d``: BN,
    then its activation) is one unit, whose output a left fold keeps."""
    norms = [name for name, module in model.named_modules() if isinstance(module, BATCHNORM_TYPES)]
    inside = tuple(f"{name}." for name in norms if name)
    leaves = {name for name, module in model.named_modules() if not module._modules and not name.startswith(inside)}
    return set(norms) | leaves


def changed_on_purpose(calls: list[Call]) -> set[tuple[str, int]]:
    """Calls whose outputs a correct fold changes: a Conv/Linear that feeds a BN, and a plain BN
    (no activation inside) that feeds a Conv/Linear."""
    feeds: dict[str, set[type[nn.Module]]] = {}
    plain = {call.name for call in calls if call.module_type.forward is nn.modules.batchnorm._BatchNorm.forward}
    for call in calls:
        if call.producer is not None:
            feeds.setdefault(call.producer, set()).add(call.module_type)
    skipped = set()
    for call in calls:
        consumers = feeds.get(call.name, set())
        if (issubclass(call.module_type, LINEAR_TYPES) and any(issubclass(k, BATCHNORM_TYPES) for k in consumers)) or (
            call.name in plain and any(issubclass(k, LINEAR_TYPES) for k in consumers)
        ):
            skipped.add((call.name, call.index))
    return skipped


def output_differences(first: list[Call], second: list[Call]) -> dict[tuple[str, int], float]:
    theirs = {(call.name, call.index): call.outputs for call in second}
    return {
        (call.name, call.index): relative_difference(call.outputs, theirs[(call.name, call.index)])
        for call in first
        if (call.name, call.index) in theirs
    }


def label(call: Call, skipped: set[tuple[str, int]]) -> str:
    details = [call.module_type.__name__]
    if call.index > 1:
        details.append(f"call {call.index}")
    if any(name == call.producer for name, _ in skipped):  # its fold partner, not compared
        details.append(f"after {call.producer}")
    return f"{call.name or 'model'} ({', '.join(details)})"
