"""Choose a canonizer for a model by name (study files, configs) or by its type."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from xaisearch.canonize.auto import AutoCanonizer
from xaisearch.canonize.base import Canonizer, NoCanonizer
from xaisearch.canonize.densenet import VARIANTS as DENSENET_VARIANTS
from xaisearch.canonize.densenet import DenseNetCanonizer
from xaisearch.canonize.efficientnet import EfficientNetCanonizer
from xaisearch.canonize.relation_network import RelationNetworkCanonizer
from xaisearch.canonize.residual import ResNetCanonizer
from xaisearch.canonize.vgg import SequentialFoldCanonizer

CANONIZERS: dict[str, Callable[[], Canonizer]] = {
    "none": NoCanonizer,
    "vgg": SequentialFoldCanonizer,
    "resnet": ResNetCanonizer,
    "resnet.structural": functools.partial(ResNetCanonizer, fold=False),
    "efficientnet": EfficientNetCanonizer,
    "efficientnet.structural": functools.partial(EfficientNetCanonizer, fold=False),
    "auto": AutoCanonizer,
    **{f"densenet.{variant}": functools.partial(DenseNetCanonizer, variant) for variant in DENSENET_VARIANTS},
    "relation_network": RelationNetworkCanonizer,
}


def available() -> list[str]:
    """Names accepted by ``get_canonizer`` and by the study file's ``canonizer`` field."""
    return sorted(CANONIZERS)


def canonizer_name_for(model: nn.Module) -> str:
    """The registered canonizer that fits ``model``'s architecture."""
    from torchvision.models import VGG

    if isinstance(model, VGG):
        return "vgg"
    from torchvision.models import EfficientNet, ResNet

    if isinstance(model, ResNet):
        return "resnet"
    if isinstance(model, EfficientNet):
        return "efficientnet"
    from torchvision.models import DenseNet

    from xaisearch.models.relation_network import RelationNetwork

    if isinstance(model, DenseNet):
        return "densenet.thresh_seq"  # the paper's variant; its border bias maps are visible to LRP rules here
    if isinstance(model, RelationNetwork):
        return "relation_network"
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not has_batchnorm:
        return "none"
    return "auto"  # any other BatchNorm model: folds found by tracing; what it cannot fold it names


def get_canonizer(name: str | None, model: nn.Module | None = None) -> Canonizer:
    """The canonizer called ``name``; ``None`` picks the one registered for the model's type."""
    if name is None:
        if model is None:
            raise ValueError("choosing a canonizer by model type needs the model")
        name = canonizer_name_for(model)
    if name not in CANONIZERS:
        raise ValueError(f"unknown canonizer {name!r}; known: {available()}")
    return CANONIZERS[name]()
