"""Build a model from its name, class count, input shape and weights (``ModelRef``).

Our own builders register in ``MODELS`` (the registry helper: a duplicate name is an error);
every torchvision classification builder is available besides them, under its own name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xaisearch.models.ref import ModelRef
from xaisearch.registry import Registry

MODELS: Registry[Callable[[ModelRef], nn.Module]] = Registry("model")
MINI_MODELS = ("mini_vgg",)
RELATION_NETWORKS = ("relation_network", "mini_relation_network")  # VQA: fix a question before model(image)


@MODELS.register("mini_vgg")
def _mini_vgg(ref: ModelRef) -> nn.Module:
    from xaisearch.models.mini import mini_vgg

    return mini_vgg(num_classes=ref.num_classes, image_size=ref.input_shape[-1])


@MODELS.register("relation_network")
def _relation_network(ref: ModelRef) -> nn.Module:
    from xaisearch.models.relation_network import relation_network

    return relation_network(num_classes=ref.num_classes)


@MODELS.register("mini_relation_network")
def _mini_relation_network(ref: ModelRef) -> nn.Module:
    from xaisearch.models.relation_network import mini_relation_network

    return mini_relation_network(num_classes=ref.num_classes)


def torchvision_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available() -> list[str]:
    """Our own models (mini VGG, Relation Networks) plus every torchvision classification builder."""
    return MODELS.available() + torchvision_models()


def build_architecture(ref: ModelRef) -> nn.Module:
    """The randomly initialised architecture ``ref`` names."""
    if ref.name in MODELS:
        return MODELS.get(ref.name)(ref)
    if ref.name not in torchvision_models():
        own = MODELS.available()
        raise ValueError(f"unknown model {ref.name!r}; use a torchvision classification builder or {own}")
    import torchvision

    return torchvision.models.get_model(ref.name, weights=None, num_classes=ref.num_classes)


def load_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint: a bare state dict or one under ``model_state``/``state_dict``."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    for key in ("model_state", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    return state


def build_model(ref: ModelRef, base_dir: Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The model of ``ref`` in eval mode on ``device``, with its weights loaded.

    Relative weight paths are resolved against ``base_dir`` (the config file's folder), then
    the working directory; other strings name torchvision weights (``IMAGENET1K_V1``).
    """
    model = build_architecture(ref)
    if ref.weights is not None:
        candidates = [Path(ref.weights)] if base_dir is None else [base_dir / ref.weights, Path(ref.weights)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            model.load_state_dict(load_state(path))
        elif re.fullmatch(r"[A-Z0-9_]+", ref.weights):
            import torchvision

            model = torchvision.models.get_model(ref.name, weights=ref.weights)
        else:
            raise FileNotFoundError(
                f"model weights {ref.weights!r} not found (looked in {[str(p) for p in candidates]})"
            )
    return model.to(device).eval()
