"""Package attributes imported on first use (PEP 562), so that a light submodule stays light.

``xaisearch.metrics.catalog`` must be importable without torch (a study file is validated
against it in well under a second), but importing any submodule first runs its package's
``__init__``. So the packages whose modules need torch export their public names through
``lazy_exports``: ``from xaisearch.metrics import PixelFlipping`` works as before and imports
torch only then. Each package also imports the same names under ``TYPE_CHECKING`` for type checkers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, from ``{submodule: (names, ...)}``."""
    where = {name: f"{package}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    def __dir__() -> list[str]:
        return sorted(where)

    return sorted(where), __getattr__, __dir__
