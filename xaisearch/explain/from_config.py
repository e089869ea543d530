"""The one-call entry points for zennit users of an exported composite config.

Re-exported as ``xaisearch.composite_from_config`` and ``xaisearch.model_from_config``. A config
with a mistake raises ``xaisearch.errors.InputError``, one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from zennit.core import Composite

from xaisearch.explain.config import ExplainerConfig, load_config


def composite_from_config(config: str | Path | dict | ExplainerConfig, model: nn.Module) -> Composite:
    """A zennit composite (canonizer attached) that reproduces the config's attributions.

    >>> composite = composite_from_config("runs/demo/best_composite.json", model)
    >>> with zennit.attribution.Gradient(model, composite) as attributor:
    ...     output, relevance = attributor(x, one_hot_target)
    """
    from xaisearch.explain.methods import build_composite

    explainer, _ = load_config(config)
    return build_composite(explainer, model)


def model_from_config(config: str | Path | dict | ExplainerConfig, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a config names, with its weights, in eval mode."""
    from xaisearch.models.zoo import build_model

    explainer, base_dir = load_config(config)
    return build_model(explainer.model, base_dir=base_dir, device=device)
