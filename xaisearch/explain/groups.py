"""Layer groups: which Conv/Linear layers share a rule.

Groups are resolved to explicit module names once, from the traced execution order (forward
hooks on one dummy input), never from ``named_modules()`` registration order, which differs
from data flow in many models (zennit #63). The resolved names are what configs store, so a
config means the same layers on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
DEPTH_CONV_GROUPS: tuple[str, ...] = ("low", "mid", "high")
DENSE_GROUP = "dense"


def execution_order(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of leaf modules in the order they first run on one dummy input."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []

    def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name not in seen:
                seen.add(name)
                order.append(name)

        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):
            handles.append(module.register_forward_hook(recorder(name)))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return order


def linear_layers(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, str]]:
    """``(name, "conv" | "dense")`` for every Conv/Linear layer, in execution order."""
    modules = dict(model.named_modules())
    kinds = []
    for name in execution_order(model, input_shape):
        module = modules[name]
        if isinstance(module, CONV_TYPES):
            kinds.append((name, "conv"))
        elif isinstance(module, nn.Linear):
            kinds.append((name, "dense"))
    return kinds


def depth_groups(model: nn.Module, input_shape: Sequence[int]) -> dict[str, list[str]]:
    """Convolutions split into low/mid/high thirds by execution depth, dense layers apart.

    With fewer convolutions than groups the deeper groups stay empty (and are left out).
    """
    layers = linear_layers(model, input_shape)
    convs = [name for name, kind in layers if kind == "conv"]
    groups = {
        group: [str(n) for n in chunk]
        for group, chunk in zip(DEPTH_CONV_GROUPS, np.array_split(np.array(convs, dtype=object), 3))
        if len(chunk)
    }
    dense = [name for name, kind in layers if kind == "dense"]
    if dense:
        groups[DENSE_GROUP] = dense
    return groups


def first_layer(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The first Conv/Linear layer the input passes through (where z^B or flat rules go)."""
    layers = linear_layers(model, input_shape)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv or Linear layer to explain")
    return layers[0][0]


def named_groups(model: nn.Module, input_shape: Sequence[int], patterns: dict[str, list[str]]) -> dict[str, list[str]]:
    """Groups given by module names or ``fnmatch`` patterns (``features.*``); each layer once, first match wins."""
    from fnmatch import fnmatchcase

    layers = [name for name, _ in linear_layers(model, input_shape)]
    groups: dict[str, list[str]] = {}
    taken: set[str] = set()
    for group, group_patterns in patterns.items():
        matched = [n for n in layers if n not in taken and any(fnmatchcase(n, p) for p in group_patterns)]
        if not matched:
            raise ValueError(f"layer group {group!r}: no Conv/Linear layer matches {group_patterns}")
        taken.update(matched)
        groups[group] = matched
    return groups
