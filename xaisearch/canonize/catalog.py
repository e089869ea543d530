"""Canonizers by name, importable without torch: what a study file's ``canonizer`` may say.

``CANONIZERS`` holds factories (``() -> Canonizer``). The built-in ones are lazy: each imports its
module on first call, so listing the names (validating a study file) costs no torch import.
Register your own with ``@CANONIZERS.register("my_net")`` on a ``Canonizer`` subclass.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from xaisearch.registry import Registry

if TYPE_CHECKING:
    from xaisearch.canonize.base import Canonizer

CanonizerFactory = Callable[[], "Canonizer"]
DenseNetVariant = Literal["head_only", "thresh_seq", "seq_thresh", "untangled"]
DENSENET_VARIANTS: tuple[DenseNetVariant, ...] = get_args(DenseNetVariant)
# ``densenet.<variant>.paper``: LRP sees what Pahde et al.'s own canonizers show it (densenet.py)
DENSENET_PAPER_VARIANTS: tuple[DenseNetVariant, ...] = ("thresh_seq", "seq_thresh", "untangled")

CANONIZERS: Registry[CanonizerFactory] = Registry("canonizer")


@dataclass(frozen=True)
class LazyCanonizer:
    """``module.attribute(*args, **kwargs)``, imported when the canonizer is first made."""

    module: str
    attribute: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Canonizer:
        factory = getattr(importlib.import_module(f"xaisearch.canonize.{self.module}"), self.attribute)
        return factory(*self.args, **self.kwargs)


_BUILT_IN: dict[str, LazyCanonizer] = {
    "none": LazyCanonizer("base", "NoCanonizer"),
    "vgg": LazyCanonizer("vgg", "SequentialFoldCanonizer"),
    "resnet": LazyCanonizer("residual", "ResNetCanonizer"),
    "resnet.structural": LazyCanonizer("residual", "ResNetCanonizer", kwargs={"fold": False}),
    "efficientnet": LazyCanonizer("efficientnet", "EfficientNetCanonizer"),
    "efficientnet.structural": LazyCanonizer("efficientnet", "EfficientNetCanonizer", kwargs={"fold": False}),
    "auto": LazyCanonizer("auto", "AutoCanonizer"),
    **{f"densenet.{v}": LazyCanonizer("densenet", "DenseNetCanonizer", (v,)) for v in DENSENET_VARIANTS},
    **{
        f"densenet.{v}.paper": LazyCanonizer("densenet", "DenseNetCanonizer", (v,), {"paper_rules": True})
        for v in DENSENET_PAPER_VARIANTS
    },
    "relation_network": LazyCanonizer("relation_network", "RelationNetworkCanonizer"),
}
for _name, _factory in _BUILT_IN.items():
    CANONIZERS.add(_name, _factory)


def available() -> list[str]:
    """Names accepted by ``get_canonizer`` and by the study file's ``canonizer`` field."""
    return CANONIZERS.available()
