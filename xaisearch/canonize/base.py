"""The canonizer protocol: reversible, atomic surgery that keeps the model's function.

A canonizer follows zennit's ``Canonizer`` protocol, so it can sit in any zennit composite's
``canonizers`` list: ``apply(model)`` performs every step and returns the applied steps, each
with a ``remove()`` that undoes it. On top of zennit it guarantees:

* **function kept**: while applied, the model computes the same outputs (eval mode) up to
  floating-point rounding; ``canonize.verify`` measures it;
* **exact restore by identity**: ``remove()`` puts back the very ``Parameter`` and buffer
  objects that were there before, so ``state_dict``, optimizers built earlier and parameter
  object identity are untouched, and no instance attribute shadows a parameter;
* **atomic failure**: if a step raises, the steps already applied are removed before the error
  propagates, so a failed ``apply`` leaves the model as it was;
* **nothing silent**: every BatchNorm it cannot fold is listed by name in ``plan(model).unfolded``.
"""

from __future__ import annotations

import abc
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn
from zennit.canonizers import Canonizer as ZennitCanonizer


class SurgeryStep(abc.ABC):
    """One reversible change to a model: ``register()`` applies it, ``remove()`` undoes it exactly."""

    description: str = ""

    @abc.abstractmethod
    def register(self) -> None: ...

    @abc.abstractmethod
    def remove(self) -> None: ...


@dataclass
class CanonizationPlan:
    """What a canonizer would do to a model, computed without changing it."""

    steps: list[SurgeryStep] = field(default_factory=list)
    batchnorms: list[str] = field(default_factory=list)
    folded: list[str] = field(default_factory=list)
    unfolded: dict[str, str] = field(default_factory=dict)  # name -> why it could not be folded
    notes: list[str] = field(default_factory=list)  # other structure left as it is, and why


class StepSequence(SurgeryStep):
    """Steps that build on each other: registered in order, atomically, and removed in reverse."""

    def __init__(self, steps: Sequence[SurgeryStep], description: str = "") -> None:
        self.steps = list(steps)
        self.description = description or "; ".join(step.description for step in self.steps)
        self._applied: list[SurgeryStep] = []

    @classmethod
    def registered(cls, steps: Sequence[SurgeryStep], description: str) -> StepSequence:
        """A handle for steps that are already registered, which removes them last-first."""
        sequence = cls(steps, description)
        sequence._applied = list(steps)
        return sequence

    def register(self) -> None:
        try:
            for step in self.steps:
                step.register()
                self._applied.append(step)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        while self._applied:
            self._applied.pop().remove()


class Canonizer(ZennitCanonizer):
    """Base class: subclasses implement ``plan``; applying and removing are shared and atomic."""

    name: str = "base"

    @abc.abstractmethod
    def plan(self, model: nn.Module) -> CanonizationPlan:
        """Find the surgery for ``model`` without touching it."""

    def apply(self, root_module: nn.Module) -> list[SurgeryStep]:
        """Register every planned step; return **one** handle that removes them last-first.

        Steps may build on each other (a weight folded from the left, then from the right; a
        module swapped in by one step and replaced by the next), and zennit's
        ``Composite.remove`` undoes a canonizer's handles first-to-last: a single reversing
        handle makes removal exact under zennit and under ``verify`` alike.
        """
        if root_module.training:
            raise ValueError(
                f"canonizer {self.name!r}: the model is in train mode; call model.eval() first "
                "(folded BatchNorm is only equal to the original with running statistics)"
            )
        applied: list[SurgeryStep] = []
        try:
            for step in self.plan(root_module).steps:
                step.register()
                applied.append(step)
        except BaseException:
            for step in reversed(applied):
                step.remove()
            raise
        return [StepSequence.registered(applied, f"{self.name}: {len(applied)} steps")]

    def register(self) -> None:  # zennit's abstract per-instance hooks; our steps carry them
        raise NotImplementedError("apply a Canonizer to a model; its steps register themselves")

    def remove(self) -> None:
        raise NotImplementedError("remove the steps returned by apply()")

    def copy(self) -> Canonizer:
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoCanonizer(Canonizer):
    """Leaves the model as it is (the study file's ``canonizer: none``)."""

    name = "none"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        from xaisearch.canonize.plan import batchnorm_names  # plan.py builds on this module

        names = batchnorm_names(model)
        return CanonizationPlan(batchnorms=names, unfolded={n: "canonizer 'none' folds nothing" for n in names})


def swap_tensor(module: nn.Module, key: str, value: torch.Tensor | None) -> torch.Tensor | None:
    """Replace a registered parameter or buffer by ``value`` and return the object it held.

    Works on the module's ``_parameters``/``_buffers`` dicts directly, so nothing is ever
    shadowed in the instance ``__dict__`` and the old object can be put back by identity.
    """
    if key in module._parameters:
        old = module._parameters[key]
        parameter = value
        if value is not None and not isinstance(value, nn.Parameter):
            requires_grad = old.requires_grad if old is not None else True
            parameter = nn.Parameter(value, requires_grad=requires_grad)
        module._parameters[key] = cast("nn.Parameter | None", parameter)  # a Parameter or None, as made above
        return old
    if key in module._buffers:
        old_buffer = module._buffers[key]
        module._buffers[key] = value
        return old_buffer
    raise KeyError(f"{type(module).__name__} has no parameter or buffer {key!r}")


def child_module(parent: nn.Module, name: str) -> nn.Module:
    """The child registered as ``parent.<name>`` now (an earlier step may have swapped it)."""
    child = parent._modules.get(name)
    if child is None:
        raise KeyError(f"{type(parent).__name__} has no child module {name!r}")
    return child


class SwapChild(SurgeryStep):
    """Put ``make(original)`` where ``parent.<name>`` is; ``remove()`` puts the original object back."""

    def __init__(self, parent: nn.Module, name: str, make: Callable[[nn.Module], nn.Module], description: str) -> None:
        self.parent, self.name, self.make, self.description = parent, name, make, description
        self._original: nn.Module | None = None

    def register(self) -> None:
        original = child_module(self.parent, self.name)
        replacement = self.make(original)
        self.parent._modules[self.name] = replacement
        self._original = original

    def remove(self) -> None:
        if self._original is not None:
            self.parent._modules[self.name] = self._original
            self._original = None


class ReplaceForward(SurgeryStep):
    """Give ``module`` an instance ``forward`` and register helper ``children`` (e.g. ``Sum`` modules).

    The helpers are registered submodules, so zennit composites (which apply canonizers before
    they walk ``named_modules``) attach rules to them; modules created inside a forward would
    never get a hook (zennit #236). ``remove()`` deletes the instance attribute, which uncovers
    the class's ``forward`` again, and unregisters exactly the children it added.
    """

    def __init__(
        self,
        module: nn.Module,
        forward: Callable[..., object],
        children: dict[str, nn.Module] | None = None,
        description: str = "",
    ) -> None:
        self.module = module
        self.forward = forward
        self.children = dict(children or {})
        self.description = description
        self._bound: object | None = None

    def register(self) -> None:
        module = self.module
        if "forward" in vars(module):
            raise RuntimeError(f"{type(module).__name__} already has an instance forward; is it canonized twice?")
        taken = [name for name in self.children if hasattr(module, name)]
        if taken:
            raise RuntimeError(f"{type(module).__name__} already has attributes {taken}")
        try:
            for name, child in self.children.items():
                module.add_module(name, child)
            self._bound = types.MethodType(self.forward, module)
            object.__setattr__(module, "forward", self._bound)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        module = self.module
        if self._bound is not None and vars(module).get("forward") is self._bound:
            del module.__dict__["forward"]
        self._bound = None
        for name, child in self.children.items():
            if module._modules.get(name) is child:
                del module._modules[name]
