"""Choose a canonizer for a model by name (study files, configs; see ``catalog``) or by its type."""

from __future__ import annotations

from torch import nn

from xaisearch.canonize.base import Canonizer
from xaisearch.canonize.catalog import CANONIZERS, available
from xaisearch.canonize.plan import is_batchnorm

__all__ = ["CANONIZERS", "available", "canonizer_name_for", "get_canonizer"]


def canonizer_name_for(model: nn.Module) -> str:
    """The registered canonizer that fits ``model``'s architecture.

    timm's models (``timm/<name>``) get ``auto`` when they hold a BatchNorm, ``none`` otherwise:
    their classes are timm's own (none subclasses torchvision's), and tracing finds their folds,
    whatever the family; timm is not imported to tell."""
    has_batchnorm = any(is_batchnorm(m) for m in model.modules())
    if type(model).__module__.partition(".")[0] == "timm":
        return "auto" if has_batchnorm else "none"
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
        # the paper's variant with the authors' rules: on the mini DenseNet it gives better localisation,
        # complexity and robustness than ours (BENCHMARKS.md, "The canonization table on the mini zoo")
        return "densenet.thresh_seq.paper"
    if isinstance(model, RelationNetwork):
        return "relation_network"
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
    return CANONIZERS.get(name)()
