"""One registry helper for canonizers, metrics, model builders, datasets and samplers.

In the manner of torchvision's ``register_model``: a decorator adds an entry under a name, a
duplicate name is an error (two plugins must not silently shadow each other), ``available()``
lists the names and ``get(name)`` fails with the known names in its message. The registry holds
names and factories only, so listing names (what a study file's validation needs) imports no
torch when the entries are registered by lazy factories.
"""

from __future__ import annotations

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
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; choose another name")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {self.available()}")
        return self._entries[name]

    def available(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
