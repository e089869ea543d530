"""Remember a canonizer's plan for a model, without keeping the model alive and without going stale.

Tracing a model costs 50-300 ms and a zennit composite applies its canonizer on every
explanation call. A plan's steps hold the model's modules, so the cache keeps a *template*: a
deep copy in which every module, parameter and buffer of the model is replaced by a reference
by name (so the cache holds no part of the model). Each ``plan`` call resolves the references
on the live model into a fresh copy: new step objects (steps carry registration state), bound to
the model's own objects. The folds themselves are computed at ``register()`` time.

The template is reused while the model's *fingerprint* is the same. It covers each module's
name, object, class and ``forward`` (class-level or instance), and its plain settings (bools,
numbers, strings and tuples of them: ``padding``, ``groups``, a flag a ``forward`` branches on).
Anything else that changes the traced structure needs a new model object or a new canonizer.
A model that cannot be hashed is planned every time.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from xaisearch.canonize.base import CanonizationPlan

_PLAIN = (bool, int, float, str, type(None))


@dataclass(frozen=True, eq=False)
class _Ref:
    """Stands for one of the model's modules, parameters or buffers in a cached template."""

    kind: str
    name: str

    def resolve(self, model: nn.Module) -> object:
        if self.kind == "module":
            return model.get_submodule(self.name)
        if self.kind == "parameter":
            return model.get_parameter(self.name)
        return model.get_buffer(self.name)


def _is_plain(value: object) -> bool:
    return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))


def fingerprint(model: nn.Module) -> int:
    """Changes whenever a module is swapped, retyped, given another ``forward`` or other plain settings."""
    return hash(
        tuple(
            (
                name,
                id(module),
                type(module),
                type(module).forward,
                id(vars(module).get("forward")),
                tuple(sorted((k, v) for k, v in vars(module).items() if not k.startswith("_") and _is_plain(v))),
            )
            for name, module in model.named_modules(remove_duplicate=False)
        )
    )


def _references(model: nn.Module) -> dict[int, _Ref]:
    """``id(object) -> _Ref`` for every module, parameter and buffer of ``model`` (first name wins)."""
    refs: dict[int, _Ref] = {}
    for kind, named in (
        ("module", model.named_modules(remove_duplicate=False)),
        ("parameter", model.named_parameters(remove_duplicate=False)),
        ("buffer", model.named_buffers(remove_duplicate=False)),
    ):
        for name, obj in named:
            refs.setdefault(id(obj), _Ref(kind, name))
    return refs


class PlanCache:
    """Plans per model object, weakly held (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[nn.Module, tuple[int, CanonizationPlan, list[_Ref]]] = (
            weakref.WeakKeyDictionary()
        )

    def plan(self, model: nn.Module, make: Callable[[nn.Module], CanonizationPlan]) -> CanonizationPlan:
        """A plan for ``model`` with its own steps: ``make(model)`` once, copies of its template after."""
        try:
            tree = fingerprint(model)
            entry = self._entries.get(model)
        except TypeError:  # an unhashable model: no caching
            return make(model)
        if entry is not None and entry[0] == tree:
            _, template, refs = entry
            return copy.deepcopy(template, {id(ref): ref.resolve(model) for ref in refs})
        plan = make(model)
        refs_by_id = _references(model)
        template = copy.deepcopy(plan, dict(refs_by_id))  # the model's objects become references by name
        self._entries[model] = (tree, template, list(refs_by_id.values()))
        return plan

    def __len__(self) -> int:
        return len(self._entries)
