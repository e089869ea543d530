"""One registry helper for canonizers, metrics, model builders, datasets and samplers.

In the manner of torchvision's ``register_model``: a decorator adds an entry under a name, a
duplicate name is an error (two plugins must not silently shadow each other), ``available()``
lists the names and ``get(name)`` fails with the known names in its message.

A study file's validation needs the names only, and must not pay for torch (seconds) to report a
typo. So an entry may be *declared*: ``declare(name, module)`` records that importing ``module``
registers ``name``; ``available()`` lists it at once and the first ``get(name)`` imports the
module, whose ``@register`` fills the entry in. Entries may also be lazy factories themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; ``str()`` lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` is used in error messages: "canonizer", "metric")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._declared: dict[str, str] = {}  # name -> the module whose import registers it

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@CANONIZERS.register("vgg")``; without a name, the entry's ``name`` or ``__name__``."""

        def add(entry: T) -> T:
            key = name or getattr(entry, "name", None) or getattr(entry, "__name__", None)
            if not isinstance(key, str):
                raise ValueError(f"a {self.kind} needs a name to be registered")
            self.add(key, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        declared = self._declared.get(name)
        if name in self._entries or (declared is not None and getattr(entry, "__module__", declared) != declared):
            raise ValueError(f"{self.kind} {name!r} is registered twice; choose another name")
        self._entries[name] = entry

    def declare(self, name: str, module: str) -> None:
        """Promise that importing ``module`` registers ``name`` (listed now, imported on first ``get``)."""
        if name in self._declared or name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; choose another name")
        self._declared[name] = module

    def declared_module(self, name: str) -> str | None:
        """The module that registers a declared ``name``; ``None`` for entries registered directly."""
        return self._declared.get(name)

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._declared:
            importlib.import_module(self._declared[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._declared[name]} did not register the {self.kind} {name!r} it declares")
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {self.available()}")
        return self._entries[name]

    def available(self) -> list[str]:
        """Every name, declared or registered; imports nothing."""
        return sorted(set(self._entries) | set(self._declared))

    def items(self) -> Iterator[tuple[str, T]]:
        """Every entry, importing the modules of declared ones."""
        return iter([(name, self.get(name)) for name in self.available()])

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared

    def __len__(self) -> int:
        return len(self.available())
