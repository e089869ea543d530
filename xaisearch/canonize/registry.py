"""Choose a canonizer for a model by name (study files, configs) or by its type."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from xaisearch.canonize.base import Canonizer, NoCanonizer
from xaisearch.canonize.vgg import SequentialFoldCanonizer

CANONIZERS: dict[str, Callable[[], Canonizer]] = {
    "none": NoCanonizer,
    "vgg": SequentialFoldCanonizer,
}


def available() -> list[str]:
    """Names accepted by ``get_canonizer`` and by the study file's ``canonizer`` field."""
    return sorted(CANONIZERS)


def canonizer_name_for(model: nn.Module) -> str:
    """The registered canonizer that fits ``model``'s architecture."""
    from torchvision.models import VGG

    if isinstance(model, VGG):
        return "vgg"
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not has_batchnorm:
        return "none"
    raise ValueError(
        f"no canonizer is registered for {type(model).__name__}; name one of {available()} "
        "in the study file's 'canonizer' field"
    )


def get_canonizer(name: str | None, model: nn.Module | None = None) -> Canonizer:
    """The canonizer called ``name``; ``None`` picks the one registered for the model's type."""
    if name is None:
        if model is None:
            raise ValueError("choosing a canonizer by model type needs the model")
        name = canonizer_name_for(model)
    if name not in CANONIZERS:
        raise ValueError(f"unknown canonizer {name!r}; known: {available()}")
    return CANONIZERS[name]()
